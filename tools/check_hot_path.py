"""GPU checks of the compressed step's hot path (run through the device tool; not a test; table printed last).

1. *No waits in the hooks*: one forward + backward of a small Llama with LoRA under each preset, with
   ``torch.cuda.set_sync_debug_mode("warn")``; every synchronizing call made from a frame of hyclora_hooks is
   listed with its stack. A host wait inside a pack stops the host from queueing work ahead of the GPU, so the
   hooks' Python time adds to the step instead of overlapping with the model's kernels.
2. *Deferred non-finite values* (NOTE [Deferred non-finite check] in ``kernels/nonfinite.py``): a tensor with
   NaN and +-Inf saved under ``quant``, ``fp8``, ``sparse`` and ``lowrank`` (whose factors' check falls back to
   the tensor itself) inside ``compress()`` on CUDA gives the same gradient, bit for bit, as decoding the same
   codec's payload built outside a context, and the accountant's stored bytes equal that payload's size,
   non-finite values (or the fallback) included.

    PYTHONPATH=. python tools/check_hot_path.py            # ~30 s on an H100
"""

from __future__ import annotations

import sys
import traceback
import warnings
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import torch  # noqa: E402

import hyclora_hooks as hyclora  # noqa: E402
from hyclora_hooks.codecs import make_codec  # noqa: E402
from hyclora_hooks.models import add_lora, random_batch, tiny_llama  # noqa: E402
from hyclora_hooks.policy import Policy, Rule  # noqa: E402

_OURS = ("hyclora_hooks", "/kernels/")


def sync_sites(model, batch, preset: str) -> list[str]:
    """Stacks (innermost frames of this package) of every synchronizing CUDA call made inside the hooks."""
    found: list[str] = []

    def record(message, category, filename, lineno, file=None, line=None):
        stack = [f for f in traceback.extract_stack()[:-1] if any(o in f.filename for o in _OURS)]
        if stack and stack[-1].name == "__torch_function__" and "func(*args" in (stack[-1].line or ""):
            return  # the model's own op, run by the op tracker (plain autograd would wait there too)
        if stack and "check_hot_path" not in stack[-1].filename:
            found.append(" <- ".join(f"{Path(f.filename).name}:{f.lineno}({f.name})" for f in reversed(stack[-4:])))

    old = warnings.showwarning
    warnings.showwarning = record
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = record
            torch.cuda.set_sync_debug_mode("warn")
            try:
                with hyclora.compress(preset, model=model):
                    loss = model(**batch).loss
                loss.backward()
            finally:
                torch.cuda.set_sync_debug_mode("default")
    finally:
        warnings.showwarning = old
    return sorted(set(found))


class _Save(torch.autograd.Function):
    """Saves its input for backward (op class ``unknown``: a policy rule for ``unknown`` reaches it)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * 2

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x.float().nan_to_num(7.0, 11.0, -13.0).to(g.dtype)  # where each value came back, exactly


def deferred_nonfinite(codec_spec: dict, dev: torch.device) -> tuple[bool, str]:
    gen = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(512, 1024, device=dev, generator=gen).to(torch.bfloat16)
    flat = x.view(-1)
    pos = torch.tensor([3, 70_000, 300_001, 524_287], device=dev)
    flat[pos] = torch.tensor([float("nan"), float("inf"), float("-inf"), float("nan")], device=dev,
                             dtype=x.dtype)
    name = codec_spec["codec"]
    params = {k: v for k, v in codec_spec.items() if k != "codec"}
    codec = make_codec(name, params)
    ref = codec.encode(x)  # outside a context: queued (NOTE [Deferred non-finite check] rule 6), settled by decode
    expect = (torch.ones_like(x) * codec.decode(ref).float().nan_to_num(7.0, 11.0, -13.0).to(x.dtype))
    policy = Policy(name="all_" + name, rules=(Rule(codec=name, op_class=("unknown",), params=params),))
    leaf = x.clone().requires_grad_()
    with hyclora.compress(policy, min_bytes=0) as ctx:
        y = _Save.apply(leaf * 1)  # not the leaf itself: a saved leaf is kept as is (NOTE [Lifetimes] rule 11)
    stored = ctx.report().stored_bytes
    y.backward(torch.ones_like(y))
    same = torch.equal(leaf.grad.view(torch.int16), expect.view(torch.int16))
    nb = codec.nbytes(ref)
    return same and stored == nb, f"grad bit-equal {same}; stored {stored} B vs payload {nb} B"


def main() -> int:
    if not torch.cuda.is_available():
        print("check_hot_path: needs a CUDA device", file=sys.stderr)
        return 2
    dev = torch.device("cuda")
    model = add_lora(tiny_llama(hidden=512, intermediate=1376, layers=2, heads=8, kv_heads=4, vocab=4096,
                                dtype=torch.bfloat16), r=16).to(dev)
    eager = add_lora(tiny_llama(hidden=512, intermediate=1376, layers=2, heads=8, kv_heads=4, vocab=4096,
                                attn="eager", dtype=torch.bfloat16), r=16).to(dev)
    batch = {k: v.to(dev) for k, v in random_batch(4096, 2, 256, seed=0).items()}
    rows = []
    for preset in hyclora.preset_names():
        if preset == "offload":
            continue  # its copies wait on events by design (NOTE [Offload streams])
        for label, m in (("sdpa", model), ("eager", eager)):
            for _ in range(2):  # the first step calibrates outlier channels; the second is the steady state
                sites = sync_sites(m, batch, preset)
            rows.append((f"no host wait in hooks: {preset} ({label})", not sites,
                         "; ".join(sites[:3]) + (f" (+{len(sites) - 3} more)" if len(sites) > 3 else "")
                         if sites else "none"))
    for spec in ({"codec": "quant", "bits": 4}, {"codec": "quant", "bits": 2, "outlier_ratio": 0.01},
                 {"codec": "fp8"}, {"codec": "sparse", "ratio": 0.1}, {"codec": "lowrank", "rank": 0.125}):
        ok, detail = deferred_nonfinite(spec, dev)
        rows.append((f"deferred non-finite: {spec}", ok, detail))
    w = max(len(r[0]) for r in rows)
    print(f"device {torch.cuda.get_device_name()} | torch {torch.__version__}")
    for name, ok, detail in rows:
        print(f"{name:<{w}}  {'PASS' if ok else 'FAIL'}  {detail}")
    return 0 if all(r[1] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
