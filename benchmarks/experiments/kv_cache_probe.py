"""SmolLM2 + KJV at the 2-bit setting: LoRA-gradient fidelity (NOTE [Fidelity probe]) with HF's KV cache on (the
CLI's path before session 28) and off (since), and the stored bytes by op/role of each (session 49: off, v is not
stored but rebuilt through v_proj from the 2-bit norm input; docs/benchmarks.md "Where things stand (session 49)").

    python benchmarks/experiments/kv_cache_probe.py [POLICY ...]     # dev CPU, ~3 min; needs the demo packages"""
import sys
from pathlib import Path

import torch
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import hyclora_hooks as hyclora
from hyclora_hooks.zoo import ensure_lora, load_model
from hyclora_hooks.corpus import train_eval_batches
from hyclora_hooks.fidelity import probe
from tools.cli import _op_class_rows
torch.manual_seed(0)
loaded = load_model("smollm2", dtype="auto", log=print, device=torch.device("cpu"))
model = ensure_lora(loaded.model, r=8, targets=None, random_b=False, seed=0)
model.config.use_cache = False
batches, _, _ = train_eval_batches("kjv", loaded.tokenizer, model.config.vocab_size, batch=4, seq=128, n_train=20 + 5 + 2, n_eval=0, seed=0)
pols = [hyclora.load_policy(a).with_knobs(bits=2) for a in (sys.argv[1:] or ["intra_inter"])]
variants = {"no cache": batches}
if "--both" in sys.argv or len(sys.argv) == 1:
    variants["cache"] = [dict(b, use_cache=True) for b in batches]
for name, bs in variants.items():
    res = probe(model, bs, pols, train_steps=20, calibrate=5, probe_batches=2, lr=1e-3, seed=0)
    for r in res:
        print(f"== {name} {r.policy}: cosine {r.mean_cosine:.4f} {[round(c, 4) for c in r.grad_cosine]} stored {r.stored_bytes/2**20:.2f} MiB", flush=True)
    pol = pols[0]
    with hyclora.compress(pol, model=model) as ctx:
        loss = model(**bs[0]).loss
    rep = ctx.report(); loss.backward(); model.zero_grad(set_to_none=True)
    for r in _op_class_rows(rep.to_dict()):
        print(f"   {name} {(r['op'], r['role'], r['codec'])}: n {r['count']} act {r['activation_bytes'] / 2**20:.2f} MiB "
              f"stored {r['stored_bytes'] / 2**20:.2f} MiB")
