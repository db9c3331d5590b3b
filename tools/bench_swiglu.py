"""GPU check and benchmark of the fused SiLU + Hadamard kernel (kernels/swiglu.py) against torch's three ops.

Not a test. For MLP-shaped tensors (tokens x intermediate; Llama-2-7B's 4 x 1024 x 11008 by default), it

* checks on the GPU that :func:`silu_mul_triton` gives torch's bits (``F.silu``, ``*``, ``.to``) for bf16, fp16
  and fp32, with and without the fp32 upcast peft applies to down_proj's input, on random gates spread over
  SiLU's whole range plus NaN/Inf/huge/tiny values, and on a ragged size;
* times, with ``triton.testing.do_bench`` (median): ``copy`` (one tensor read and written, the bandwidth
  yardstick), ``torch`` (silu, mul, cast: what ``intra_inter`` replays) and ``fused`` (one kernel), bytes
  counted as each moves them, and the fused/torch time ratio.

    python tools/bench_swiglu.py --out bench_swiglu.json             # on a GPU, well under a minute
    TRITON_INTERPRET=1 python tools/bench_swiglu.py --smoke          # CPU: tiny sizes, checks the script's logic

The last thing printed is the table; exit code 1 when a bit check fails.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tools.bench_quant import _triton_version, device_and_timers  # noqa: E402  (imports neither torch nor triton)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--intermediate", type=int, default=11008)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, runs on CPU under TRITON_INTERPRET=1")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.smoke:  # before triton is first imported
        os.environ.setdefault("TRITON_INTERPRET", "1")
    import torch

    from hyclora_hooks.kernels import swiglu

    found = device_and_timers("bench_swiglu", args.smoke)
    if found is None:
        return 2
    dev, bench, _ = found
    cuda = dev.type == "cuda"

    tokens, inter = (8, 40) if args.smoke else (args.tokens, args.intermediate)
    gen = torch.Generator(device=dev).manual_seed(0)

    def inputs(shape, dtype):
        g = torch.randn(shape, generator=gen, device=dev) * 4
        g.view(-1)[::97] *= 30  # deep in both tails
        u = torch.randn(shape, generator=gen, device=dev)
        special = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-30, 1e4, -1e4], device=dev)
        g.view(-1)[:special.numel()] = special
        u.view(-1)[-special.numel():] = special
        return g.to(dtype), u.to(dtype)

    def same(a, b):
        bits = {2: torch.int16, 4: torch.int32}[a.element_size()]
        return bool(((a.view(bits) == b.view(bits)) | (torch.isnan(a) & torch.isnan(b))).all())

    checks = []
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        for out_dtype in (None, torch.float32):
            for shape in ((tokens, inter), (3, 1001)):
                g, u = inputs(shape, dtype)
                s, p = swiglu.silu_mul(g, u, out_dtype, backend="triton")
                s_ref, p_ref = swiglu.silu_mul_ref(g, u, out_dtype)
                checks.append({"dtype": str(dtype).replace("torch.", ""), "out": str(out_dtype or dtype)
                               .replace("torch.", ""), "shape": list(shape), "silu_equal": same(s, s_ref),
                               "product_equal": same(p, p_ref) and p.dtype == p_ref.dtype})

    rows = []
    for dtype, out_dtype in ((torch.bfloat16, torch.float32), (torch.bfloat16, None)):
        g, u = inputs((tokens, inter), dtype)
        n, e = g.numel(), g.element_size()
        oe = torch.finfo(out_dtype or dtype).bits // 8
        dst = torch.empty_like(g)
        t_copy = bench(lambda: dst.copy_(g))
        t_torch = bench(lambda: swiglu.silu_mul_ref(g, u, out_dtype))
        t_fused = bench(lambda: swiglu.silu_mul_triton(g, u, out_dtype))
        cast = out_dtype is not None and out_dtype != dtype
        torch_bytes = n * (2 * e + 3 * e + (e + oe if cast else 0))  # silu r+w; mul 2r+w; cast r+w
        fused_bytes = n * (2 * e + e + oe)  # gate and up read; silu output and product written
        for op, t, b in (("copy", t_copy, 2 * n * e), ("torch", t_torch, torch_bytes), ("fused", t_fused, fused_bytes)):
            rows.append({"dtype": str(dtype).replace("torch.", ""), "out": str(out_dtype or dtype).replace("torch.", ""),
                         "op": op, "seconds": t, "bytes": b, "gbps": b / t / 1e9,
                         "vs_torch": t / t_torch})

    meta = {"date": datetime.date.today().isoformat(), "device": torch.cuda.get_device_name() if cuda else "cpu",
            "torch": torch.__version__, "triton": _triton_version(), "shape": [tokens, inter],
            "command": "python tools/bench_swiglu.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    ok = all(c["silu_equal"] and c["product_equal"] for c in checks)
    result = {"meta": meta, "checks": checks, "rows": rows, "all_checks_pass": ok}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    print(f"\nfused SiLU + Hadamard on {meta['device']} (torch {meta['torch']}, triton {meta['triton']}, "
          f"{meta['date']}); {tokens} x {inter}")
    print("bits vs torch on this device:", "all equal" if ok else "MISMATCH: " + ", ".join(
        f"{c['dtype']}->{c['out']} {c['shape']}" for c in checks if not (c["silu_equal"] and c["product_equal"])))
    print(f"{'dtype':<9} {'product':<9} {'op':<6} {'us':>9} {'GB/s':>8} {'x torch':>8}")
    for r in rows:
        print(f"{r['dtype']:<9} {r['out']:<9} {r['op']:<6} {r['seconds'] * 1e6:>9.1f} {r['gbps']:>8.1f} "
              f"{r['vs_torch']:>8.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
