"""Variants of _quant_words_kernel's outlier path at its session-7 tiles (8192 elements a program, 4 warps): 2 and
8 warps, half-row column blocks (NG = 32), an evict-first load of the input, and no outlier gather (wrong bytes:
timing only), at 64 MiB, 256 MiB and 1 GiB bf16 x 4096, 20 outlier channels; GPU time by the torch profiler.
Output: ../results/2026-11-30-h200-quant-words-tile-variants-session7.txt. Run from the repository root on a GPU:
``PYTHONPATH=. python benchmarks/experiments/quant_words_tile_variants.py``."""
import torch

from quant_words_common import Q, cases, dev_time, encoder, exact, kernel_variants, pct_copy

GATHER = """        if HAS_OUTL:  # last: the tile's rows are in L1 by now, and the lanes long loaded
            rm = (rows < R)[:, None] & tm[None, :]
            col = tl.load(x_ptr + rows[:, None] * (s_r * PER) + c_t[None, :], mask=rm)
            tl.store(outl_ptr + rows[:, None] * K + t[None, :], col, mask=rm)"""
LW1 = "            w = tl.load(w_ptr + r3 * s_r + w3)\n"
LW2 = "            w = tl.load(w_ptr + r3 * s_r + w3, mask=mask, other=0)\n"
kernels = kernel_variants({"evict first": [(LW1, LW1.replace(")\n", ', eviction_policy="evict_first")\n')),
                                           (LW2, LW2.replace(")\n", ', eviction_policy="evict_first")\n'))],
                           "no gather": [(GATHER, "")]})
CONFIGS = ((4, 8192, 64), (2, 8192, 64), (4, 8192, 32), (8, 16384, 64), (4, 8192, 64))  # warps, tile, NG cap
rows = []
for mib, x, tc, bits, oi in cases():
    outl = oi is not None
    for name, k in kernels.items():
        if name != "library" and not outl:  # the variants change the outlier path only
            continue
        for warps, tile, cap in CONFIGS:
            if (name != "library" or not outl) and (warps, cap) != (4, 64):
                continue
            Q._WARPS, Q._WORD_TILE_OUTLIERS, Q._WORD_TILE = warps, tile, cap * 64
            Q._quant_words_kernel = k
            run = encoder(x, bits, oi)
            q = run()
            t = dev_time(run)
            rows.append((mib, bits, outl, name, f"{warps}w/{tile}/ng{cap}", t, pct_copy(x, q.nbytes, t, tc),
                         exact(x, bits, oi) if name == "library" else None))
            Q._quant_words_kernel = kernels["library"]
Q._WARPS, Q._WORD_TILE, Q._WORD_TILE_OUTLIERS = 4, 4096, 8192
print(torch.cuda.get_device_name())
print(f"{'MiB':>4} {'bits':>4} {'outl':>5} {'variant':<14} {'cfg':>12} {'dev us':>8} {'% copy':>7} exact")
for r in rows:
    print("%4d %4d %5s %-14s %12s %8.1f %6.1f%% %s" % r)
