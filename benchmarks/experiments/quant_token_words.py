"""4-bit token groups on int32 words (session 29): ``_quant_token_words_kernel`` (a word's two codes packed by a
shift) against the library's ``_quant_token_tile_kernel`` (codes packed by a reshape and a sum across lanes), at
the step's token-group shapes (q/k: tokens x 4096; gate/up: tokens x 11008) and the presets' 4-bit groups (128
tokens at ``bits=2``, where q/k/gate/up take 4 bits; 64 as well), with and without outlier channels. Bits: the
words kernel's payload against the tile kernel's, every byte. GPU time: ``tools/bench_quant.py``'s timer (median
device time of a call), as a share of a device copy of the same tensor, for several words a program and warps.

    cd benchmarks/experiments && PYTHONPATH=../.. python quant_token_words.py

The kernel was measured 1.6-2.1x slower than the tile kernel (docs/benchmarks.md session 29) and taken out of the
library again; it, its launcher and its bit test are in commit 65252da (``git checkout 65252da -- kernels/quant.py``
to run this).
"""
import torch

from quant_words_common import Q, copy_time, dev_time

VARIANTS = [(16, 1), (16, 2), (32, 2), (32, 4), (64, 2), (64, 4)]  # (words a program, warps)


def payload(x, g, idx, words: bool, block_w: int = 32, warps: int = 2):
    Q.TOKEN_WORDS, Q._TOKEN_WORDS_W, Q._TOKEN_WORDS_WARPS = words, block_w, warps
    return Q.quantize(x, 4, g, False, "token_group", idx, None, backend="triton")


def same(a, b) -> bool:
    return all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("packed", "scale", "zero"))


def main() -> None:
    Q._build()
    gen = torch.Generator(device="cuda").manual_seed(0)
    rows = []
    for shape in ((4096, 4096), (4096, 11008), (8192, 4096), (8192, 11008)):
        x = torch.randn(shape, generator=gen, device="cuda").to(torch.bfloat16)
        tc = copy_time(x)
        for g in (128, 64):
            for idx in (None, torch.tensor([3, 700, 2049], dtype=torch.int16, device="cuda")):
                ref = payload(x, g, idx, False)
                t_tile = dev_time(lambda: payload(x, g, idx, False))
                best = None
                for bw, warps in VARIANTS:
                    got = payload(x, g, idx, True, bw, warps)
                    ok = same(ref, got)
                    t = dev_time(lambda: payload(x, g, idx, True, bw, warps))
                    rows.append((f"{shape[0]}x{shape[1]}", g, idx is not None, f"words {bw}x{warps}", t, tc, ok))
                    best = min(best or (t, bw, warps), (t, bw, warps))
                rows.append((f"{shape[0]}x{shape[1]}", g, idx is not None, "tile (library)", t_tile, tc, True))
                print(f"{shape} g{g} outliers={idx is not None}: tile {t_tile:.1f} us, best words {best[0]:.1f} us "
                      f"({best[1]}x{best[2]}): {best[0] / t_tile:.2f}x", flush=True)
    Q.TOKEN_WORDS = False
    print(f"\n{'shape':12} {'g':>4} {'outl':>5} {'kernel':16} {'us':>8} {'% of copy':>9} bits")
    for shape, g, outl, name, t, tc, ok in rows:
        print(f"{shape:12} {g:4} {str(outl):>5} {name:16} {t:8.1f} {100 * tc / t:8.0f}% {'same' if ok else 'DIFFER'}")


if __name__ == "__main__":
    main()
