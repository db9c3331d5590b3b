"""GPU check: the RoPE'd LoRA part kernel (kernels/rope_part.py) against its reference, and what it saves.

Not a test. For q and k, ``intra_inter`` subtracts the LoRA part carried through rotary embedding before storing
(and adds it back in backward); NOTE [RoPE part] in ``hyclora_hooks/lineage.py``. At Llama-2-7B attention shapes
(32 heads of 128, LoRA r16, bf16) this checks, on the GPU:

* the kernel against ``rope_part_ref`` (fp32 math, one rounding): at most one bf16 ulp apart;
* two kernel calls give the same bits (the forward's part and the backward's must be one);
* how far each is from the exact (fp64) value, next to the op-by-op replay it replaces;
* ``rope_lora_part`` (peft's fp32 ``x·A`` and ``B`` scaled and cast in the kernel) gives the same bits as the
  kernel fed torch's casts (session 14), and its host time against the casts plus the kernel;
* ``rope_combine`` (the part subtracted from / added to q in the kernel's pass, session 17) gives the same bits as
  the part the kernel writes, then torch's ``sub``/``add``;
* ``rope_rebuild`` (q from its stored frozen term, session 22: the term plus the part, rotated) against
  ``rope_rebuild_ref``: at most one bf16 ulp apart;

then times, with ``triton.testing.do_bench`` (median ms), the op-by-op replay (bf16 ops, as before the kernel),
the reference and the kernel, the subtraction as two passes (kernel, then torch) against one, and the rebuild
(which replaces the forward's subtraction and the backward's addition) against the addition.

    PYTHONPATH=. python tools/check_rope_part.py                  # 4x1024 and 1x8192
    PYTHONPATH=. python tools/check_rope_part.py --shapes 2x512

The last thing printed is the table.
"""

from __future__ import annotations

import argparse


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="GPU check: the RoPE'd LoRA part kernel against its reference.")
    p.add_argument("--shapes", default="4x1024,1x8192", help="comma list of BATCHxSEQ")
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--rank", type=int, default=16)
    return p.parse_args(argv)


def host_us(fn, n: int = 200, sync=None) -> float:
    """Median host time of a call in microseconds, launches only: ``sync`` (default: the current CUDA device's)
    runs before each call and after the last, so no call waits for an earlier one's kernels."""
    import statistics
    import time

    import torch

    sync = sync or torch.cuda.synchronize
    times = []
    for _ in range(n):
        sync()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    sync()
    return statistics.median(times) * 1e6


def main(argv: list[str] | None = None) -> list[dict]:
    args = _parse(argv)
    import torch
    from triton.testing import do_bench

    from hyclora_hooks.kernels import rope_part as rp
    from tools.tables import print_rows

    rows = []
    gen = torch.Generator(device="cuda").manual_seed(0)
    for spec in args.shapes.split(","):
        b, t = (int(x) for x in spec.split("x"))
        h, d, r = args.heads, args.head_dim, args.rank
        shape = (b, t, h, d)
        x = torch.randn(b * t, r, device="cuda", generator=gen)  # peft's fp32 x·A and B, scaling 2
        bw = torch.randn(h * d, r, device="cuda", generator=gen) * 0.025
        p, w = x.bfloat16(), (bw * 2.0).bfloat16()
        pos = torch.arange(t, device="cuda", dtype=torch.float32)
        inv = 1.0 / (10000 ** (torch.arange(0, d, 2, device="cuda", dtype=torch.float32) / d))
        ang = torch.cat([torch.outer(pos, inv)] * 2, dim=-1)[None, None]
        cos, sin = ang.cos().bfloat16(), ang.sin().bfloat16()
        got = rp.rope_part_triton(p, w, cos, sin, shape)
        cast_in = rp.rope_lora_part(x, bw, 2.0, torch.bfloat16, cos, sin, shape)
        again = rp.rope_part_triton(p, w, cos, sin, shape)
        ref = rp.rope_part_ref(p, w, cos, sin, shape)
        ops = rp.rope_part_ops(p, w, cos, sin, shape)
        exact = rp.rope_part_ops(p.double(), w.double(), cos.double(), sin.double(), shape)
        ulp = torch.finfo(torch.bfloat16).eps * ref.float().abs().clamp_min(1.0)
        q = torch.randn(b * t, h * d, device="cuda", generator=gen).bfloat16()  # the (B·T, H·D) buffer q views
        alone = rp.rope_lora_part(x, bw, 2.0, torch.bfloat16, cos, sin, shape).transpose(1, 2).reshape(b * t, h * d)
        lora_cast = (torch.bfloat16, 2.0)

        def combine(subtract: bool) -> torch.Tensor:
            return rp.rope_combine(q, x, bw, cos, sin, shape, subtract, lora_cast)

        def two_passes() -> torch.Tensor:
            return torch.sub(q, rp.rope_lora_part(x, bw, 2.0, torch.bfloat16, cos, sin, shape).transpose(1, 2)
                             .reshape(b * t, h * d))
        base = torch.randn(b, t, h * d, device="cuda", generator=gen).bfloat16()  # a stored frozen term
        rebuilt = rp.rope_rebuild(base, x, bw, cos, sin, shape, lora_cast)
        rebuilt_ref = rp.rope_rebuild_ref(base, p, w, cos, sin, shape)
        rebuilt_ulp = torch.finfo(torch.bfloat16).eps * rebuilt_ref.float().abs().clamp_min(1.0)
        rows.append({
            "shape": spec,
            "within 1 ulp": bool(((got.float() - ref.float()).abs() <= ulp * 1.01).all()),
            "repeatable": torch.equal(got, again),
            "casts in kernel same bits": torch.equal(cast_in, got),
            "combine same bits": torch.equal(combine(True), torch.sub(q, alone))
            and torch.equal(combine(False), torch.add(q, alone)),
            "err kernel": (got.double() - exact).abs().max().item(),
            "err ops": (ops.double() - exact).abs().max().item(),
            "ops ms": do_bench(lambda: rp.rope_part_ops(p, w, cos, sin, shape), return_mode="median"),
            "ref ms": do_bench(lambda: rp.rope_part_ref(p, w, cos, sin, shape), return_mode="median"),
            "kernel ms": do_bench(lambda: rp.rope_part_triton(p, w, cos, sin, shape), return_mode="median"),
            "host us casts+kernel": host_us(lambda: rp.rope_part(x.bfloat16(), (bw * 2.0).bfloat16(), cos, sin,
                                                                   shape)),
            "host us casts in kernel": host_us(lambda: rp.rope_lora_part(x, bw, 2.0, torch.bfloat16, cos, sin,
                                                                          shape)),
            "sub 2 passes ms": do_bench(two_passes, return_mode="median"),
            "sub fused ms": do_bench(lambda: combine(True), return_mode="median"),
            "host us sub 2 passes": host_us(two_passes),
            "host us sub fused": host_us(lambda: combine(True)),
            "rebuild within 1 ulp": bool(((rebuilt.float() - rebuilt_ref.float()).abs() <= rebuilt_ulp * 1.01).all()),
            "add fused ms": do_bench(lambda: combine(False), return_mode="median"),
            "rebuild ms": do_bench(lambda: rp.rope_rebuild(base, x, bw, cos, sin, shape, lora_cast),
                                   return_mode="median"),
        })
    print_rows(f"RoPE'd LoRA part, {args.heads} heads x {args.head_dim}, r{args.rank}, bf16, "
               f"{torch.cuda.get_device_name()}", rows)
    return rows


if __name__ == "__main__":
    main()
