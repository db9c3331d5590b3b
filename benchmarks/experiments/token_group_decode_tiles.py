"""Token-group decode: how wide a word tile (session 17).

The word dequantize kernel gave a token-group tensor (q/k at ``@2``: 4 bits, groups of 128 tokens; gate/up/SwiGLU
operands: 4 bits, 128 tokens at ``@2``, 8 bits, 32 tokens at ``@4``) tiles one group tall and ``_TILE / g``
elements wide: 16 elements (32 bytes a row) at groups of 128, and read ~1.3-1.5 TB/s where groups along the row
read ~2.4 TB/s. The first run of this script (``../results/2026-12-01-h200-session17/token_tiles/first-run.txt``) raised
``_TILE`` for the decode; the kernel now takes ``_WORD_TOKEN_COLS`` channels up to ``_WORD_TOKEN_TILE`` elements,
and this times the default against other widths (the element cap lifted) and checks the bits; then the element
dequantize kernel's decode-and-add (``intra_inter_full_fuse``) by its token-group width (``_ELEMENT_TOKEN_COLS``):

    PYTHONPATH=. python benchmarks/experiments/token_group_decode_tiles.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
from triton.testing import do_bench  # noqa: E402

from hyclora_hooks.kernels import quant  # noqa: E402


def main() -> None:
    cols, cap = quant._WORD_TOKEN_COLS, quant._WORD_TOKEN_TILE
    for tokens, n, bits, g in [(8192, 11008, 4, 128), (8192, 4096, 4, 128), (8192, 11008, 8, 32),
                               (4096, 11008, 4, 128)]:
        gen = torch.Generator(device="cuda").manual_seed(0)
        t = torch.randn(tokens, n, device="cuda", generator=gen).bfloat16()
        q = quant.quantize(t, bits, g, granularity="token_group", backend="triton")
        want = quant.dequantize(q)
        row = [f"{tokens} x {n} {bits}b/t{g}"]
        for width, tile in [(cols, cap)] + [(w, 1 << 20) for w in (16, 64, 128, 256, 512)]:
            quant._WORD_TOKEN_COLS, quant._WORD_TOKEN_TILE = width, tile
            try:
                same = torch.equal(quant.dequantize(q), want)
                ms = do_bench(lambda: quant.dequantize(q), return_mode="median")
            finally:
                quant._WORD_TOKEN_COLS, quant._WORD_TOKEN_TILE = cols, cap
            gbs = t.numel() * 2 / ms / 1e6
            name = "default" if tile == cap else f"{width} wide"
            row.append(f"{name}: {ms:.4f} ms {gbs:.0f} GB/s{'' if same else ' DIFFERENT BITS'}")
        print(" | ".join(row))
    # the element kernel (intra_inter_full_fuse's decode-and-add) by its token-group tile width
    for tokens, n, bits, g in [(8192, 11008, 4, 128), (8192, 11008, 8, 32), (8192, 4096, 4, 128)]:
        gen = torch.Generator(device="cuda").manual_seed(0)
        t = torch.randn(tokens, n, device="cuda", generator=gen).bfloat16()
        add = torch.randn(tokens, n, device="cuda", generator=gen)
        q = quant.quantize(t, bits, g, granularity="token_group", backend="triton")
        want = quant.dequantize_add(q, add)
        row = [f"decode_add {tokens} x {n} {bits}b/t{g}"]
        default = quant._ELEMENT_TOKEN_COLS
        for width in (16, 32, 64, 128):  # 16: the element tiles' own width at groups of 128 (before session 17)
            quant._ELEMENT_TOKEN_COLS = width
            try:
                same = torch.equal(quant.dequantize_add(q, add), want)
                ms = do_bench(lambda: quant.dequantize_add(q, add), return_mode="median")
            finally:
                quant._ELEMENT_TOKEN_COLS = default
            name = f"{width}{' (default)' if width == default else ''}"
            row.append(f"{name}: {ms:.4f} ms{'' if same else ' DIFFERENT BITS'}")
        print(" | ".join(row))


if __name__ == "__main__":
    main()
