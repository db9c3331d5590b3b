import sys; sys.path.insert(0,'tests'); sys.path.insert(0,'.')
import torch, hyclora_hooks as hy
from conftest import cosine
from test_inter import BUILDERS
from hyclora_hooks.models import add_lora, random_batch, lora_grads
from hyclora_hooks import attention
calls = []
orig = attention.sdpa_with_lse
def spy(q, k, v, mask, *a, **kw):
    calls.append((tuple(q.shape), q.dtype, None if mask is None else (mask.dtype, tuple(mask.shape)), kw.get("cudnn")))
    return orig(q, k, v, mask, *a, **kw)
attention.sdpa_with_lse = spy
dev = "cuda"
for name in ("llama", "gpt2"):
  for dtype, ac in ((torch.bfloat16, False), (torch.float32, True), (torch.float32, False)):
    for pad in (0, 7):
        model = add_lora(BUILDERS[name](attn="sdpa", dtype=dtype)).to(dev)
        batch = {k: v.to(dev) for k, v in random_batch(model.config.vocab_size, batch=2, seq=32, pad=pad, pad_id=model.config.pad_token_id or 0).items()}
        def run(pol=None, **k):
            model.zero_grad(set_to_none=True)
            with torch.autocast(dev, dtype=torch.bfloat16, enabled=ac):
                if pol is None: loss = model(**batch).loss
                else:
                    with hy.compress(pol, **k) as ctx: loss = model(**batch).loss
            loss.backward(); return lora_grads(model)
        g0 = run(); calls.clear()
        g2 = run("intra_inter", bits=4)
        g8 = run("intra_inter", bits=8)
        print(name, dtype, "autocast" if ac else "", "pad", pad, "ii@4 cos %.4f ii@8 cos %.4f" % (cosine(g2, g0), cosine(g8, g0)), "replays", calls[:1])
