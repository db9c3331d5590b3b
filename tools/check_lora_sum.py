"""GPU check: peft's LoRA sum in one pass each way (``kernels/lora_sum.py``, NOTE [LoRA sum]).

Not a test. peft ends a LoRA linear with ``(base + lora * scaling).to(base.dtype)`` (three ATen passes; three more
in backward: the gradient cast to fp32, the add's cast back, the scaling's ``mul``). This checks on the GPU that
the kernels give those ops' bits (NaN and signed zeros placed among the values) and times both ways at Llama-2-7B
output widths (``triton.testing.do_bench``, median ms): forward, and backward through ``autograd.grad`` of peft's
expression against the node's.

    TRITON_INTERPRET=0 PYTHONPATH=. python tools/check_lora_sum.py

The last thing printed is the table.
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description="GPU check: peft's LoRA sum in one pass each way.")
    p.add_argument("--tokens", default="4096,8192", help="comma list of token counts (default 4096,8192)")
    p.add_argument("--widths", default="4096,11008", help="comma list of output widths (default 4096,11008)")
    args = p.parse_args(argv)
    import torch
    from triton.testing import do_bench

    from hyclora_hooks import lora_sum
    from hyclora_hooks.kernels import lora_sum as kernels
    from tools.tables import print_rows

    def same(a: torch.Tensor, b: torch.Tensor) -> bool:
        nan = a.isnan() & b.isnan()
        return bool(((a == b) & (a.signbit() == b.signbit()) | nan).all()) and torch.equal(a.isnan(), b.isnan())

    dev, rows = "cuda", []
    for tokens in (int(t) for t in args.tokens.split(",")):
        for width in (int(w) for w in args.widths.split(",")):
            for half in (torch.bfloat16, torch.float16):
                gen = torch.Generator(device=dev).manual_seed(tokens + width)
                base = (torch.randn(tokens, width, device=dev, generator=gen) * 8).to(half)
                lora = torch.randn(tokens, width, device=dev, generator=gen) * 0.05
                lora.view(-1)[:4] = torch.tensor([float("nan"), float("inf"), 3e38, -0.0], device=dev)
                grad = (torch.randn(tokens, width, device=dev, generator=gen)).to(half)
                s = 2.0
                fwd_same = same(kernels.lora_sum(base, lora, s), kernels.lora_sum_ref(base, lora, s))
                bwd_same = same(kernels.scaled_grad(grad, s), kernels.scaled_grad_ref(grad, s))
                b, l_ = base.clone().requires_grad_(True), lora.clone().requires_grad_(True)
                peft_out, node_out = (b + l_ * s).to(half), lora_sum.apply(b, l_, s)
                got = torch.autograd.grad(node_out, (b, l_), grad, retain_graph=True)
                want = torch.autograd.grad(peft_out, (b, l_), grad, retain_graph=True)
                rows.append({
                    "case": f"{tokens} x {width}, {str(half)[6:]}",
                    "same bits": fwd_same and bwd_same and same(node_out, peft_out)
                    and all(same(g, w) for g, w in zip(got, want)),
                    "peft fwd ms": do_bench(lambda: (base + lora * s).to(half), return_mode="median"),
                    "kernel fwd ms": do_bench(lambda: kernels.lora_sum(base, lora, s), return_mode="median"),
                    "peft bwd ms": do_bench(lambda: torch.autograd.grad(peft_out, (b, l_), grad, retain_graph=True),
                                            return_mode="median"),
                    "node bwd ms": do_bench(lambda: torch.autograd.grad(node_out, (b, l_), grad, retain_graph=True),
                                            return_mode="median")})
    print_rows(f"LoRA sum ({torch.cuda.get_device_name()}, torch {torch.__version__})", rows)
    return rows


if __name__ == "__main__":
    main()
