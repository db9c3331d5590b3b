"""Tile sweep of the LoRA part kernel (kernels/lora_part.py) in its subtract mode, on the GPU (session 19).

The kernel moves ``t`` in and ``t - part`` out (4 bytes an element in bf16); at 8192 x 11008 it ran at ~2.8 TB/s
(0.128 ms), under the H200's copy rate. This times each (BLOCK_M, BLOCK_N, warps) with ``triton.testing.do_bench``
(median ms) against a bf16 copy of the same tensor, and checks that every tile gives ``t - part`` with the same
part bits (the part of the library's tile). Its ``--walk`` mode (programs walking 1-16 row tiles with one load of
their ``b`` tile) ran at commit 6a94dfc, with that option in the kernel; no faster, both removed after.

    TRITON_INTERPRET=0 PYTHONPATH=. python benchmarks/experiments/lora_part_tiles.py
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
from triton.testing import do_bench  # noqa: E402

from hyclora_hooks.kernels import lora_part as lp  # noqa: E402
from tools.tables import print_rows  # noqa: E402

dev, bf16 = "cuda", torch.bfloat16
default = (lp._BLOCK_M, lp._BLOCK_N, lp._WARPS)
TILES = [(bm, bn, warps) for bm in (32, 64, 128) for bn in (64, 128, 256) for warps in (4, 8)]
rows = []
for tokens, n in ((8192, 11008), (8192, 4096), (4096, 11008)):
    gen = torch.Generator(device=dev).manual_seed(tokens + n)
    t = (torch.randn(tokens, n, device=dev, generator=gen) * 3).to(bf16)
    x = torch.randn(tokens, 16, device=dev, generator=gen)
    b = torch.randn(n, 16, device=dev, generator=gen) * 0.05
    want = lp.lora_combine(t, x, b, 2.0, bf16, True)
    copy_ms = do_bench(lambda: t.clone(), return_mode="median")
    row = {"T x N": f"{tokens} x {n}", "copy ms": copy_ms}
    for bm, bn, warps in TILES:
        lp._BLOCK_M, lp._BLOCK_N, lp._WARPS = bm, bn, warps
        lp._launches.clear()
        got = lp.lora_combine(t, x, b, 2.0, bf16, True)
        ms = do_bench(lambda: lp.lora_combine(t, x, b, 2.0, bf16, True), return_mode="median")
        row[f"{bm}x{bn}/{warps}w"] = f"{ms:.4f}{'' if torch.equal(got, want) else ' !'}"
    lp._BLOCK_M, lp._BLOCK_N, lp._WARPS = default
    lp._launches.clear()
    rows.append(row)
# one row a shape is too wide to read: one table per shape, a tile a row
for row in rows:
    print_rows(f"{row['T x N']} (copy {row['copy ms']:.4f} ms; library {default}; '!' = other bits)",
               [{"rows x channels / warps": k, "ms": v} for k, v in row.items() if "/" in k])
