"""Tile sweep of the RoPE part kernel (kernels/rope_part.py) in its subtract mode, on the GPU (session 20).

``rope_combine`` moves ``t`` in and ``t - rope(part)`` out for q and k (4 bytes an element in bf16, plus cos and sin
tiles from L2); at 8192 tokens x 32 heads x 128 it ran at ~0.10 ms, about 2.5x a copy of ``t`` (session 17). This
times each (BLOCK_M, warps, heads a program walks) with ``triton.testing.do_bench`` (median ms) against a bf16 copy
of the same tensor, and checks that every variant gives the library default's bits ('!' where not).

    TRITON_INTERPRET=0 PYTHONPATH=. python benchmarks/experiments/rope_part_tiles.py
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
from triton.testing import do_bench  # noqa: E402

from hyclora_hooks.kernels import rope_part as rp  # noqa: E402
from tools.tables import print_rows  # noqa: E402

dev, bf16 = "cuda", torch.bfloat16
default = (rp._BLOCK_M, rp._WARPS, rp._HEADS)
VARIANTS = [(bm, warps, heads) for bm in (32, 64, 128) for warps in (4, 8) for heads in (1, 2, 4)]


def set_variant(bm: int, warps: int, heads: int) -> None:
    rp._BLOCK_M, rp._WARPS, rp._HEADS = bm, warps, heads
    rp._launches.clear()


for b, t in ((1, 8192), (4, 1024)):
    shape, r = (b, t, 32, 128), 16
    gen = torch.Generator(device=dev).manual_seed(t)
    x = torch.randn(b * t, r, device=dev, generator=gen)
    w = torch.randn(32 * 128, r, device=dev, generator=gen) * 0.05
    angle = torch.randn(b, 1, t, 128, device=dev, generator=gen) * 3  # HF's cos/sin: (B, T, D) unsqueezed at 1
    cos, sin = angle.cos().to(bf16), angle.sin().to(bf16)
    dense = (torch.randn(b * t, 32 * 128, device=dev, generator=gen) * 3).to(bf16)
    factors = (x, w, cos, sin, shape, True, (bf16, 2.0))
    want = rp.rope_combine(dense, *factors)
    copy_ms = do_bench(lambda: dense.clone(), return_mode="median")
    rows = []
    for variant in VARIANTS:
        set_variant(*variant)
        got = rp.rope_combine(dense, *factors)
        ms = do_bench(lambda: rp.rope_combine(dense, *factors), return_mode="median")
        rows.append({"rows / warps / heads": "%d / %d / %d" % variant, "ms": f"{ms:.4f}",
                     "x copy": f"{ms / copy_ms:.2f}", "bits": "same" if torch.equal(got, want) else "!"})
        print(b, t, rows[-1], flush=True)  # as it goes: a run cut short keeps what it measured
    set_variant(*default)
    print_rows(f"{b}x{t} (copy {copy_ms:.4f} ms; library {default})", sorted(rows, key=lambda r: float(r["ms"])))
