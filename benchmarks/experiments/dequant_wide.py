"""Decode a stored bf16 tensor straight into fp32 (``quant.dequantize_to``) against a decode then a cast (session 17).

RMSNorm's backward reads its input as fp32 (``hidden.to(fp32)``), and ``intra_inter`` stores the bf16 hidden state
at 2 bits (4 at ``@4``), so the recipe is ``to(decode)``: the word kernel writes bf16 (2 B an element), then torch
reads it and writes fp32 (2 + 4 B). The element kernel can round each value to bf16 and store it widened (4 B), one
pass. This checks the bits and times both at Llama-2-7B's hidden size with the norm inputs' parameters (groups of
64, 0.5% outlier channels), on the GPU:

    PYTHONPATH=. python benchmarks/experiments/dequant_wide.py
On the dev CPU, ``--tiny`` checks the bits under TRITON_INTERPRET=1 on a small tensor.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
if "--tiny" in sys.argv:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402

from hyclora_hooks.kernels import quant  # noqa: E402


def main() -> None:
    tiny = "--tiny" in sys.argv
    dev = "cpu" if tiny else "cuda"
    rows = []
    for tokens, bits in ([(64, 2)] if tiny else [(4096, 2), (8192, 2), (8192, 4)]):
        g = torch.Generator(device=dev).manual_seed(0)
        x = (torch.randn(tokens, 4096 if not tiny else 256, device=dev, generator=g) * 2).bfloat16()
        x[:, 7] *= 40
        k = max(1, round(x.shape[1] * 0.005))
        idx = quant.channel_sumsq(x).topk(k).indices.sort().values.to(torch.int32)
        q = quant.quantize(x, bits, 64, outlier_index=idx, backend="triton")
        want = quant.dequantize(q, backend="triton").to(torch.float32)
        got = quant.dequantize_to(q, torch.float32, backend="triton")
        row = {"tokens": tokens, "bits": bits, "same bits": bool(torch.equal(got, want) and got.dtype == want.dtype)}
        if not tiny:
            from triton.testing import do_bench

            row["decode ms"] = do_bench(lambda: quant.dequantize(q), return_mode="median")
            row["decode+cast ms"] = do_bench(lambda: quant.dequantize(q).to(torch.float32), return_mode="median")
            row["decode_to ms"] = do_bench(lambda: quant.dequantize_to(q, torch.float32), return_mode="median")
        rows.append(row)
    for row in rows:
        print("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
