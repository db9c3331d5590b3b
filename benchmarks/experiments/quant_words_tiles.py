"""Tiles of _quant_words_kernel (session 7, H200): elements a program (4096 / 8192 / 16384, at 4 warps) and row
tiles a program walks (ITERS), at 64 MiB, 256 MiB and 1 GiB bf16 x 4096, groups of 64, 20 outlier channels; GPU
time by the torch profiler, against a copy timed the same way; bit-exact against the reference on 2048 rows.

Ran on commit 77ea601's kernels/quant.py (where the outlier path walked ITERS tiles; the library now takes one
8192-element tile a program with outliers, so rerunning the ITERS rows needs that commit's file). Output:
../results/2026-11-30-h200-quant-words-tiles-session7.txt. Run from the repository root on a GPU:
``PYTHONPATH=. python benchmarks/experiments/quant_words_tiles.py``."""
import torch

from quant_words_common import Q, cases, dev_time, encoder, exact, pct_copy

CONFIGS = ((4, 4096, 8, 4096), (4, 8192, 1, 0), (4, 8192, 2, 0), (4, 8192, 4, 0), (4, 8192, 8, 4096),
           (4, 16384, 1, 0), (4, 4096, 8, 4096), (4, 8192, 1, 0))  # warps, _WORD_TILE, _WORD_ITERS, min programs
rows = []
for mib, x, tc, bits, oi in cases():
    outl = oi is not None
    for warps, tile, iters, minp in CONFIGS:
        Q._WARPS, Q._WORD_TILE, Q._WORD_ITERS, Q._WORD_ITERS_MIN_PROGRAMS = warps, tile, iters, minp
        run = encoder(x, bits, oi)
        q = run()
        t = dev_time(run)
        rows.append((mib, bits, outl, "library", f"{warps}w/{tile}/{iters}", t, pct_copy(x, q.nbytes, t, tc),
                     exact(x, bits, oi)))
Q._WARPS, Q._WORD_TILE, Q._WORD_ITERS, Q._WORD_ITERS_MIN_PROGRAMS = 4, 4096, 8, 4096
print(torch.cuda.get_device_name())
print(f"{'MiB':>4} {'bits':>4} {'outl':>5} {'variant':<14} {'cfg':>12} {'dev us':>8} {'% copy':>7} exact")
for r in rows:
    print("%4d %4d %5s %-14s %12s %8.1f %6.1f%% %s" % r)
