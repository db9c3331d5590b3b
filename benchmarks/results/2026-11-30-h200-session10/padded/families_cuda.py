"""CUDA: every model family of tests/test_inter.py in bf16 (no autocast) and under autocast, SDPA and eager, padded and
not: LoRA-gradient cosine of intra_inter at 8 and 4 bits against exact autograd."""
import os, sys; os.environ.setdefault("TRITON_INTERPRET", "0"); sys.path.insert(0, 'tests'); sys.path.insert(0, '.')
import torch, hyclora_hooks as hy
from conftest import cosine
from test_inter import BUILDERS
from hyclora_hooks.models import add_lora, random_batch, lora_grads
dev = "cuda"
worst = 1.0
for name in BUILDERS:
    for attn in ("sdpa", "eager"):
        for dtype, ac in ((torch.bfloat16, False), (torch.float32, True)):
            row = []
            for pad in (0, 7):
                model = add_lora(BUILDERS[name](attn=attn, dtype=dtype)).to(dev)
                batch = {k: v.to(dev) for k, v in random_batch(model.config.vocab_size, batch=2, seq=32, pad=pad, pad_id=model.config.pad_token_id or 0).items()}
                def run(pol=None, **k):
                    model.zero_grad(set_to_none=True)
                    with torch.autocast(dev, dtype=torch.bfloat16, enabled=ac):
                        if pol is None: loss = model(**batch).loss
                        else:
                            with hy.compress(pol, **k): loss = model(**batch).loss
                    loss.backward(); return lora_grads(model)
                g0 = run(); c8 = cosine(run("intra_inter", bits=8), g0); c4 = cosine(run("intra_inter", bits=4), g0)
                worst = min(worst, c8); row.append("pad %d: @8 %.4f @4 %.4f" % (pad, c8, c4))
            print("%-9s %-5s %-9s %s" % (name, attn, "autocast" if ac else "bf16", " | ".join(row)), flush=True)
print("worst cosine at 8 bits: %.4f" % worst)
