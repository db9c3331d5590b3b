"""Token-group quantize in one read (session 18, H200): a program loads a whole group (G tokens x BLOCK_C channels)
into registers once, reduces it along the tokens, then codes and packs the same registers; against the library's
``_quant_tokens_kernel`` (walks the group a row at a time, twice). Shapes of the step's token-group tensors
(8192 x 4096: q, k; 8192 x 11008: gate, up, SiLU's input) at the presets' settings (4 bits / 128 tokens: the 2-bit
setting's floor; 8 bits / 64: q/k at the 4-bit setting; 8 bits / 32: SwiGLU operands there). Bits against the
library's payload; GPU time by the torch profiler (``tools/bench_quant.py``'s timer). Run from the repository root
on a GPU: ``cd benchmarks/experiments && PYTHONPATH=../.. python quant_tokens_onepass.py``."""
import torch

from quant_words_common import Q, copy_time, dev_time

Q._build()
# The kernel measured in onepass.txt / onepass2.txt was this script's own copy of it (commit 764670c); the library's
# (``_quant_token_tile_kernel``, the same code with outlier channels and int64 addressing behind flags) runs here now.
onepass = Q._quant_token_tile_kernel
VARIANTS = [(32, 4), (64, 4), (64, 2), (128, 4)]  # (BLOCK_C, warps)
LIBRARY_TILES = [(512, 4), (512, 2), (256, 2), (256, 1), (128, 1)]  # second run (session 18): the library narrower
TOKEN_BLOCK_C, WARPS = Q._TOKEN_BLOCK_C, Q._WARPS
Q._TOKEN_TILE_BITS = ()  # "library" / "lib" rows: the walk kernel (the library now takes the one read at 4 bits)


def buffers(x, bits, g):
    """Codes, scales, zeros and the non-finite flag of a token-group payload of ``x``."""
    r, c = x.shape
    scale = torch.empty((-(-r // g), c), dtype=torch.bfloat16, device=x.device)
    return (torch.empty((r, c * bits // 8), dtype=torch.uint8, device=x.device), scale, torch.empty_like(scale),
            torch.zeros(1, dtype=torch.int32, device=x.device))


def library(x, bits, g):
    packed, scale, zero, nf = buffers(x, bits, g)
    return packed, scale, zero, nf, lambda: Q._launch_quant_tokens(x, packed, scale, zero, nf, bits, g, False, None, None)


def variant(x, bits, g, bc, warps):
    r, c = x.shape
    packed, scale, zero, nf = buffers(x, bits, g)
    grid = (-(-c // bc), -(-r // g))

    def run():
        onepass[grid](x, packed, scale, zero, nf, nf, r, c, x.stride(0), x.stride(1), packed.shape[1], 0,
                      BITS=bits, SYM=False, HAS_OUTL=False, STOCH=False, INT64=False, G=g, BLOCK_C=bc,
                      num_warps=warps, enable_fp_fusion=False)
    return packed, scale, zero, nf, run


rows = []
gen = torch.Generator(device="cuda").manual_seed(0)
for shape in ((8192, 4096), (8192, 11008)):
    x = torch.randn(shape, generator=gen, device="cuda").to(torch.bfloat16)
    tc = copy_time(x)
    for bits, g in ((4, 128), (4, 64), (8, 64)):
        lp, ls, lz, _, lrun = library(x, bits, g)
        lrun()
        t_lib = dev_time(lrun)
        rows.append((f"{shape[0]}x{shape[1]}", bits, g, "library", t_lib, 100 * tc / t_lib, True))
        for bc, warps in LIBRARY_TILES:  # the library kernel, narrower: more programs (8192 x 4096: 256 at 1024)
            Q._TOKEN_BLOCK_C, Q._WARPS = bc, warps
            p, s, z, _, run = library(x, bits, g)
            run()
            same = torch.equal(p, lp) and torch.equal(s, ls) and torch.equal(z, lz)
            t = dev_time(run)
            rows.append((f"{shape[0]}x{shape[1]}", bits, g, f"lib c{bc} w{warps}", t, 100 * tc / t, same))
        Q._TOKEN_BLOCK_C, Q._WARPS = TOKEN_BLOCK_C, WARPS
        for bc, warps in VARIANTS:
            try:
                p, s, z, nf, run = variant(x, bits, g, bc, warps)
                run()
                same = torch.equal(p, lp) and torch.equal(s, ls) and torch.equal(z, lz) and int(nf) == 0
                t = dev_time(run)
                rows.append((f"{shape[0]}x{shape[1]}", bits, g, f"1pass c{bc} w{warps}", t, 100 * tc / t, same))
            except Exception as e:  # a tile too large for the registers, say
                print(f"{shape} {bits}/{g} c{bc} w{warps}: {type(e).__name__}: {str(e)[:200]}")
    del x
print(torch.cuda.get_device_name())
print(f"{'shape':>11} {'bits':>4} {'g':>4} {'variant':<16} {'dev us':>8} {'% copy':>7} same bits")
for r in rows:
    print("%11s %4d %4d %-16s %8.1f %6.1f%% %s" % r)
