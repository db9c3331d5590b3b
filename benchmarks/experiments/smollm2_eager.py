"""(Session 6, CPU, ~3 min) SmolLM2 + KJV, one batch of 4 x 256, LoRA r8 with random B: LoRA-gradient cosine to
exact and activation/stored under intra_inter at 4 and 2 bits, eager against SDPA attention (after one calibration pass)."""
import sys
sys.path.insert(0, ".")
import torch, torch.nn.functional as F, hyclora_hooks as hy
from hyclora_hooks import zoo, corpus
m = zoo.smollm2(); model, tok = m.model, m.tokenizer
zoo.ensure_lora(model, r=8, random_b=True, seed=0)
train, _, _ = corpus.train_eval_batches("kjv", tok, model.config.vocab_size, batch=4, seq=256, n_train=1, n_eval=0)
b = train[0]
def grads(policy=None, bits=4):
    model.zero_grad(set_to_none=True)
    if policy is None:
        loss = model(**b).loss; rep = None
    else:
        with hy.compress(policy, model=model, bits=bits) as c:
            loss = model(**b).loss
        rep = c.report()
    loss.backward()
    return torch.cat([p.grad.float().flatten() for p in model.parameters() if p.requires_grad]), rep
for impl in ("eager", "sdpa"):
    model.set_attn_implementation(impl)
    g0, _ = grads()
    for bits in (4, 2):
        for _ in range(2):  # calibration pass first
            g, rep = grads("intra_inter", bits)
        print(impl, bits, "cos %.4f" % F.cosine_similarity(g, g0, 0).item(), "ratio %.2f" % rep.ratio, flush=True)
