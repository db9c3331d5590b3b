"""GPU check: P3's ``t - part`` quantized in one read (``quant.quantize_difference``, NOTE [Fused LoRA difference]).

Not a test. Under ``intra_inter`` gate and up are stored as ``t - part`` in 4-bit token groups; the one-read token
kernel can form the LoRA part itself instead of reading a difference the LoRA part kernel wrote. This checks on the
GPU that it stores the bytes of quantizing the LoRA part kernel's ``t - part`` and that quantizing ``part - part``
decodes to zeros (the two kernels form the same part, bit for bit), then times the two paths (device median ms,
``triton.testing.do_bench``) at each warp count in ``--warps`` and program width in ``--cols``.

    TRITON_INTERPRET=0 PYTHONPATH=. python tools/check_quant_difference.py

The last thing printed is the table.
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description="GPU check: t - part quantized in one read.")
    p.add_argument("--tokens", default="4096,8192", help="comma list of token counts")
    p.add_argument("--widths", default="4096,11008", help="comma list of widths (gate/up: 11008)")
    p.add_argument("--groups", default="64,128", help="token group sizes")
    p.add_argument("--warps", default="2,4", help="warp counts of the fused kernel to time")
    p.add_argument("--cols", default="64,128", help="channels a program of the fused kernel, to time")
    p.add_argument("--rank", type=int, default=16)
    args = p.parse_args(argv)
    import torch
    from triton.testing import do_bench

    from hyclora_hooks.kernels import lora_part
    from hyclora_hooks.kernels import quant as Q
    from tools.tables import print_rows

    dev, bf16 = "cuda", torch.bfloat16
    rows = []
    for tokens in (int(v) for v in args.tokens.split(",")):
        for n in (int(v) for v in args.widths.split(",")):
            gen = torch.Generator(device=dev).manual_seed(n + tokens)
            t = (torch.randn(tokens, n, device=dev, generator=gen) * 3).to(bf16)
            x = torch.randn(tokens, args.rank, device=dev, generator=gen)
            b = torch.randn(n, args.rank, device=dev, generator=gen) * 0.05
            part = lora_part.lora_part(x, b, 2.0, bf16)
            for g in (int(v) for v in args.groups.split(",")):
                def two_pass():
                    return Q.quantize(lora_part.lora_combine(t, x, b, 2.0, bf16, True), 4, g, False, "token_group")

                def one_read():
                    return Q.quantize_difference(t, x, b, 2.0, 4, g)

                a, f = two_pass(), one_read()
                same = all(torch.equal(getattr(a, k), getattr(f, k)) for k in ("packed", "scale", "zero"))
                zeros = bool((Q.dequantize(Q.quantize_difference(part, x, b, 2.0, 4, g)) == 0).all())
                row = {"T x N": f"{tokens} x {n}", "group": g, "same bytes": same, "part-part = 0": zeros,
                       "two passes ms": do_bench(two_pass, return_mode="median")}
                for w in (int(v) for v in args.warps.split(",")):
                    for cols in (int(v) for v in args.cols.split(",")):
                        Q._TOKEN_PART_WARPS, Q._TOKEN_PART_C = w, cols
                        row[f"1 read {w}w {cols}c"] = do_bench(one_read, return_mode="median")
                rows.append(row)
    print_rows(f"t - part quantized in one read, 4 bits, rank {args.rank} ({torch.cuda.get_device_name()}, "
               f"torch {torch.__version__})", rows)
    return rows


if __name__ == "__main__":
    main()
