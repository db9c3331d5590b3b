"""GPU check: recipes' casts written into the op's output (NOTE [Casts into outputs] in ``lineage.py``).

Not a test. ``op(a, b).to(dtype)`` is replayed as ``op(a, b, out=<dtype>)``: one write instead of two. This checks on
the GPU that both give the same bits, for the casts recipes replay (an RMSNorm's ``(x * rstd).to(bf16)`` with a
per-token ``rstd``, ``(w * h).to(fp32)``, the SwiGLU product's ``(s * u).to(fp32)``) and for every op it is used
for, and times both at Llama-2-7B widths (``triton.testing.do_bench``, median ms). Then a whole model: a tiny
Llama (bf16, SDPA) under a lossless ``inter`` policy (every tensor kept, recipes replayed) must give exact
autograd's LoRA gradients bit for bit, as two exact runs give each other's.

    TRITON_INTERPRET=0 PYTHONPATH=. python tools/check_cast_into.py

The last thing printed is the table.
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description="GPU check: casts written into the op's output.")
    p.add_argument("--tokens", type=int, default=8192)
    args = p.parse_args(argv)
    import torch
    from triton.testing import do_bench

    from hyclora_hooks import lineage
    from tools.lossless_model import lossless_grads
    from tools.tables import print_rows

    dev, t = "cuda", args.tokens
    bf16, fp32 = torch.bfloat16, torch.float32
    gen = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(1, t, 4096, device=dev, generator=gen) * 4
    rstd = torch.rand(1, t, 1, device=dev, generator=gen) + 0.2
    w = torch.randn(4096, device=dev, generator=gen).to(bf16)
    h = (torch.randn(1, t, 4096, device=dev, generator=gen) * 3).to(bf16)
    s = torch.randn(1, t, 11008, device=dev, generator=gen).to(bf16)
    u = torch.randn(1, t, 11008, device=dev, generator=gen).to(bf16)
    cases = [("(x * rstd).to(bf16)", "mul", x, rstd, bf16), ("(w * h).to(fp32)", "mul", w, h, fp32),
             ("(s * u).to(fp32)", "mul", s, u, fp32), ("(h + h).to(fp32)", "add", h, h, fp32),
             ("(x - rstd).to(bf16)", "sub", x, rstd, bf16), ("(h / 0.37).to(fp32)", "truediv", h, 0.37, fp32)]
    rows = []
    for label, op, a, b, dtype in cases:
        fn = getattr(torch.Tensor, f"__{op}__")
        node = lineage.Replay(torch.Tensor.to, "to", (lineage.Replay(
            fn, op, (lineage.Const(a), lineage.Const(b) if isinstance(b, torch.Tensor) else b), {}), dtype), {})
        got, want = lineage.evaluate(node), fn(a, b).to(dtype)
        rows.append({"case": label, "same bits": torch.equal(got, want) and got.stride() == want.stride(),
                     "op by op ms": do_bench(lambda: fn(a, b).to(dtype), return_mode="median"),
                     "out= ms": do_bench(lambda: lineage.evaluate(node), return_mode="median")})

    # a whole model: lossless recipes, bit for bit
    grads = lossless_grads()
    exact = grads()
    rows.append({"case": "tiny Llama, lossless inter policy", "same bits": torch.equal(grads(grads.keep_all), exact),
                 "op by op ms": float("nan"), "out= ms": float("nan")})
    rows[-1]["case"] += f" (exact twice: {'same' if torch.equal(grads(), exact) else 'differ'})"
    print_rows(f"casts into outputs, {t} tokens ({torch.cuda.get_device_name()}, torch {torch.__version__})", rows)
    return rows


if __name__ == "__main__":
    main()
