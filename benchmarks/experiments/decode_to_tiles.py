"""A stored bf16 tensor decoded into fp32 on the element kernel (``quant.dequantize_to``): tile sizes, warps, and its
outlier channels written in the kernel (a slot-table load per element) or scattered after it (session 31).

The 2-bit RMSNorm inputs' decodes into fp32 (17 a 4x1024 step of 8 Llama-2-7B-shaped layers) run at about half of
copy rate. Each variant's output is checked against the decode then the cast, bit for bit, then timed
(``triton.testing.do_bench``, medians) with a bf16 -> fp32 copy of the same tensor as the yardstick:

    TRITON_INTERPRET=0 PYTHONPATH=. python benchmarks/experiments/decode_to_tiles.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from hyclora_hooks.kernels import quant  # noqa: E402


def main() -> None:
    from triton.testing import do_bench

    variants = [(inside, tile, warps) for inside in (True, False) for tile in (2048, 4096, 8192) for warps in (4, 8)]
    for tokens, bits in ((4096, 2), (8192, 2), (8192, 4)):
        g = torch.Generator(device="cuda").manual_seed(0)
        x = (torch.randn(tokens, 4096, device="cuda", generator=g) * 2).bfloat16()
        x[:, 7] *= 40
        idx = quant.channel_sumsq(x).topk(20).indices.sort().values.to(torch.int32)  # 0.5% outlier channels
        q = quant.quantize(x, bits, 64, outlier_index=idx)
        want = quant.dequantize(q).to(torch.float32)
        copy_ms = do_bench(lambda: x.float(), return_mode="median")
        print(f"{tokens} x 4096, {bits} bits: x.float() {copy_ms:.4f} ms, decode then cast "
              f"{do_bench(lambda: quant.dequantize(q).to(torch.float32), return_mode='median'):.4f} ms")
        for inside, tile, warps in variants:
            quant.WIDE_OUTLIERS_IN_KERNEL, quant._WIDE_TILE, quant._WARPS = inside, tile, warps
            same = torch.equal(quant.dequantize_to(q, torch.float32), want)
            ms = do_bench(lambda: quant.dequantize_to(q, torch.float32), return_mode="median")
            print(f"  outliers {'in kernel' if inside else 'after   '}  tile {tile:5d}  warps {warps:2d}  "
                  f"same bits {same}  {ms:.4f} ms  ({ms / copy_ms:.2f}x the copy)")
        quant.WIDE_OUTLIERS_IN_KERNEL, quant._WIDE_TILE, quant._WARPS = True, None, 4


if __name__ == "__main__":
    main()
