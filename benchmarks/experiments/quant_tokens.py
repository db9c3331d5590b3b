"""Token-group quantize (session 8, H200): ``_quant_tokens_kernel`` (a program walks G tokens of BLOCK_C channels RB
rows at a time, twice) against ``_quant_kernel``'s MODE 1 tile, over RB x BLOCK_C, warps and pipelining stages, at
64 MiB-1 GiB bf16 x 4096, 4 and 8 bits (the preset's q/k widths), without and with 20 outlier channels; GPU time by
the torch profiler, bytes against the reference. Run from the repository root on a GPU:
``cd benchmarks/experiments && PYTHONPATH=../.. python quant_tokens.py`` (``QW_SIZES=64`` for a quick run)."""
import torch

from quant_words_common import Q, cases, dev_time, encoder, pct_copy

CONFIGS = [("tile kernel", False, 1, 512, 4, 1)] + [(f"{rb}x{bc} {w}w {st}st", True, rb, bc, w, st)
                                                    for rb, bc, w, st in ((1, 512, 4, 1), (1, 512, 4, 2),
                                                                          (1, 512, 4, 3), (1, 512, 4, 4),
                                                                          (2, 512, 4, 3), (1, 1024, 4, 3))]
rows = []
for mib, x, tc, bits, oi in cases((4, 8)):
    ref = Q.quantize_ref(x[:2048], bits, 64, False, "token_group", oi)
    for name, token, rb, bc, warps, stages in CONFIGS:
        Q.TOKEN_KERNEL, Q._TOKEN_ROWS, Q._TOKEN_BLOCK_C, Q._WARPS, Q._TOKEN_STAGES = token, rb, bc, warps, stages
        run = encoder(x, bits, oi, "token_group")
        q = run()
        got = Q.quantize_triton(x[:2048], bits, 64, False, "token_group", oi)
        same = all(torch.equal(getattr(got, f), getattr(ref, f)) for f in ("packed", "scale", "zero"))
        t = dev_time(run)
        rows.append((mib, bits, oi is not None, name, t, pct_copy(x, q.nbytes, t, tc), same))
Q.TOKEN_KERNEL, Q._TOKEN_ROWS, Q._TOKEN_BLOCK_C, Q._WARPS, Q._TOKEN_STAGES = True, 1, 1024, 4, 3
print(torch.cuda.get_device_name())
print(f"{'MiB':>4} {'bits':>4} {'outl':>5} {'variant':<14} {'dev us':>8} {'% copy':>7} exact")
for r in rows:
    print("%4d %4d %5s %-14s %8.1f %6.1f%% %s" % r)
