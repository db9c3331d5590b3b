"""GPU check: a plain LoRA part in one pass (``kernels/lora_part.py``, NOTE [Fused LoRA part] in ``lineage.py``).

Not a test. P3 stores ``t - part`` for v, gate and up and rebuilds ``stored + part``; the kernel forms the part in
registers and subtracts or adds it in one launch. This checks on the GPU that the kernel's subtraction and sum are
torch's ``sub``/``add`` of the kernel's own part bit for bit, reports how often that part equals cuBLAS's (the
torch path's; any part does, as long as forward and backward form the same one), and times the torch path (casts,
scaling, matmul, subtraction: five calls) against the kernel, on the device (``triton.testing.do_bench``, median
ms) and on the host (launches only, median us). Then a whole model: a tiny bf16 Llama under ``intra_inter@2`` with
the kernel and through the torch path: both LoRA gradients' cosine against exact autograd.

    TRITON_INTERPRET=0 PYTHONPATH=. python tools/check_lora_part.py

The last thing printed is the table.
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description="GPU check: a plain LoRA part in one pass.")
    p.add_argument("--tokens", default="4096,8192", help="comma list of token counts (default 4096,8192)")
    p.add_argument("--widths", default="4096,11008", help="output widths N (v: 4096, gate/up: 11008)")
    p.add_argument("--rank", type=int, default=16)
    args = p.parse_args(argv)
    import torch
    from triton.testing import do_bench

    import hyclora_hooks as hy
    from hyclora_hooks import models
    from hyclora_hooks.kernels import lora_part
    from tools.check_rope_part import host_us
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
            cublas = lora_part.part_ref(x, b, 2.0, bf16)
            exact = torch.equal(lora_part.lora_combine(t, x, b, 2.0, bf16, True), torch.sub(t, part)) and \
                torch.equal(lora_part.lora_combine(t, x, b, 2.0, bf16, False), torch.add(t, part))

            def torch_path():
                return lora_part.combine_ref(t, lora_part.part_ref(x, b, 2.0, bf16), True)

            def kernel():
                return lora_part.lora_combine(t, x, b, 2.0, bf16, True)

            rows.append({"T x N": f"{tokens} x {n}", "sub/add exact": exact,
                         "part = cuBLAS's": f"{(part == cublas).float().mean().item():.4%}",
                         "torch ms": do_bench(torch_path, return_mode="median"),
                         "kernel ms": do_bench(kernel, return_mode="median"),
                         "torch host us": host_us(torch_path), "kernel host us": host_us(kernel)})

    # a whole model: the kernel's parts against the torch path's, one intra_inter@2 step each
    model = models.add_lora(models.tiny_llama(attn="sdpa", dtype=bf16, hidden=512, intermediate=1024, heads=8,
                                              kv_heads=8, use_cache=False)).to(dev)
    batch = {k: v.to(dev) for k, v in models.random_batch(model.config.vocab_size, batch=2, seq=128).items()}

    def grads(compressed: bool = True):
        model.zero_grad(set_to_none=True)
        if compressed:
            with hy.compress("intra_inter", bits=2):
                loss = model(**batch).loss
        else:
            loss = model(**batch).loss
        loss.backward()
        return models.lora_grads(model)

    def cos(a, b):
        return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0).item()

    exact = grads(compressed=False)
    calls = []
    real, auto = lora_part._run, lora_part.use_triton
    lora_part._run = lambda *a: calls.append(a[-1]) or real(*a)
    try:
        with_kernel = grads()
        lora_part.use_triton = lambda x: False  # the torch path (the CPU's), on this GPU
        without = grads()
    finally:
        lora_part._run, lora_part.use_triton = real, auto
    rows.append({"T x N": "tiny Llama intra_inter@2", "sub/add exact": f"{len(calls)} kernel calls",
                 "part = cuBLAS's": f"grad cos vs exact: kernel {cos(with_kernel, exact):.4f}, torch "
                                    f"{cos(without, exact):.4f}",
                 "torch ms": float("nan"), "kernel ms": float("nan"), "torch host us": float("nan"),
                 "kernel host us": float("nan")})
    print_rows(f"LoRA part in one pass, rank {args.rank} ({torch.cuda.get_device_name()}, torch {torch.__version__})",
               rows)
    return rows


if __name__ == "__main__":
    main()
