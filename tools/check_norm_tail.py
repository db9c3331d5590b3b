"""GPU check: the fused RMSNorm tail (``kernels/norm_tail.py``, ``lineage.NormTail``).

Not a test. peft's fp32 copy of a LoRA input after a Llama RMSNorm is rebuilt in backward as
``(w * (x32 * rstd).to(bf16)).to(fp32)``; the kernel does it in one pass. This checks on the GPU that the kernel
gives the bits of the recipe it replaces (evaluated as before: op by op, each cast written into its op's output)
and times both at Llama-2-7B widths (``triton.testing.do_bench``, median ms). Then a whole model: a tiny Llama
(bf16, SDPA) under a lossless ``inter`` policy must give exact autograd's LoRA gradients bit for bit with the
kernel doing every RMSNorm tail.

    TRITON_INTERPRET=0 PYTHONPATH=. python tools/check_norm_tail.py

The last thing printed is the table.
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description="GPU check: the fused RMSNorm tail.")
    p.add_argument("--tokens", default="4096,8192", help="comma list of token counts (default 4096,8192)")
    p.add_argument("--hidden", type=int, default=4096)
    args = p.parse_args(argv)
    import torch
    from triton.testing import do_bench

    from hyclora_hooks import lineage
    from hyclora_hooks.kernels import norm_tail
    from tools.lossless_model import counting, lossless_grads
    from tools.tables import print_rows

    dev, bf16, fp16, fp32 = "cuda", torch.bfloat16, torch.float16, torch.float32
    rows = []
    for tokens in (int(t) for t in args.tokens.split(",")):
        for half in (bf16, fp16):
            gen = torch.Generator(device=dev).manual_seed(tokens)
            x = torch.randn(1, tokens, args.hidden, device=dev, generator=gen) * 4
            x.view(-1)[:4] = torch.tensor([float("nan"), float("inf"), 1e38, -0.0], device=dev)
            rstd = torch.rand(1, tokens, 1, device=dev, generator=gen) + 0.05
            w = torch.nn.Parameter(torch.randn(args.hidden, device=dev, generator=gen).to(half), requires_grad=False)
            prod = lineage.Replay(torch.mul, "mul", (lineage.Const(x), lineage.Const(rstd)), {})
            top = lineage.Replay(torch.mul, "mul", (lineage.Const(w), lineage.Replay(
                torch.Tensor.to, "to", (prod, half), {})), {})
            node = lineage.Replay(torch.Tensor.to, "to", (top, fp32), {})  # the recipe, as recorded
            fused = lineage.fuse_norm_tail(node)
            got, want = lineage.evaluate(fused), lineage.evaluate(node)
            same = bool(((got.view(torch.int32) == want.view(torch.int32)) | (got.isnan() & want.isnan())).all())
            rows.append({"case": f"{tokens} x {args.hidden}, {str(half)[6:]}", "fused": type(fused).__name__,
                         "same bits": same and got.stride() == want.stride(),
                         "op by op ms": do_bench(lambda: lineage.evaluate(node), return_mode="median"),
                         "kernel ms": do_bench(lambda: norm_tail.norm_tail(x, rstd, w, half, fp32),
                                               return_mode="median")})

    # a whole model: lossless recipes, the kernel doing every RMSNorm tail, bit for bit
    grads = lossless_grads()
    exact = grads()
    with counting(norm_tail, "norm_tail_triton") as calls:
        same = torch.equal(grads(grads.keep_all), exact)
    rows.append({"case": "tiny Llama, lossless inter policy", "fused": f"{len(calls)} kernel calls",
                 "same bits": same, "op by op ms": float("nan"), "kernel ms": float("nan")})
    print_rows(f"fused RMSNorm tail ({torch.cuda.get_device_name()}, torch {torch.__version__})", rows)
    return rows


if __name__ == "__main__":
    main()
