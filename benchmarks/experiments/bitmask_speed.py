"""The bitmask passes on the GPU (sessions 29-30): device and host time a call of kernels/bitmask.py's Triton pack,
unpack and apply (a dropped input rebuilt from the bits; from fp32, and from bf16 widened in the pass) against their
torch references and a copy of the mask, and at hidden-size widths an RMSNorm tail written dropped
(kernels/norm_tail.py with the bits) against the tail then the apply; each kernel's output checked against its
reference first (bit for bit).

    TRITON_INTERPRET=0 PYTHONPATH=. python benchmarks/experiments/bitmask_speed.py
"""
import sys
import time

import torch

sys.path.insert(0, ".")
from hyclora_hooks.kernels import bitmask, norm_tail  # noqa: E402
from tools.bench_quant import timers  # noqa: E402
from tools.tables import print_rows  # noqa: E402

dev_time = timers(True)[1]


def host_us(fn, reps: int = 50) -> float:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    t = (time.perf_counter() - t0) / reps * 1e6
    torch.cuda.synchronize()
    return t


def main() -> None:
    rows = []
    scale = 1 / 0.95
    for shape in ((4096, 4096), (4096, 11008), (8192, 4096), (8192, 11008)):
        m = torch.rand(shape, device="cuda") > 0.05
        x = torch.randn(shape, device="cuda")
        packed = bitmask.pack(m)
        same = (torch.equal(packed, bitmask.pack_ref(m.reshape(-1)))
                and torch.equal(bitmask.unpack(packed, m.numel()), m.reshape(-1))
                and torch.equal(bitmask.apply(x, packed, scale).view(torch.int32), (x * m * scale).view(torch.int32)))
        cases = (("pack", lambda: bitmask.pack(m)), ("pack_ref", lambda: bitmask.pack_ref(m.reshape(-1))),
                 ("unpack", lambda: bitmask.unpack(packed, m.numel())),
                 ("unpack_ref", lambda: bitmask.unpack_ref(packed, m.numel())),
                 ("apply", lambda: bitmask.apply(x, packed, scale)), ("x * mask * scale", lambda: x * m * scale),
                 ("copy of the mask", lambda: m.clone()))
        xb = x.bfloat16()
        same = same and torch.equal(bitmask.apply(xb, packed, scale).view(torch.int32),
                                    (xb.float() * m * scale).view(torch.int32))
        cases += (("apply from bf16", lambda: bitmask.apply(xb, packed, scale)),
                  ("bf16.float() * mask * scale", lambda: xb.float() * m * scale))
        if shape[1] == 4096:
            rstd, w = torch.rand(shape[0], 1, device="cuda") + 0.5, torch.randn(shape[1], device="cuda").bfloat16()
            tail = norm_tail.norm_tail_triton(x, rstd, w, torch.bfloat16)
            same = same and torch.equal(norm_tail.norm_tail_triton(x, rstd, w, torch.bfloat16, packed, scale)
                                        .view(torch.int32), bitmask.apply(tail, packed, scale).view(torch.int32))
            cases += (("norm tail written dropped",
                       lambda: norm_tail.norm_tail_triton(x, rstd, w, torch.bfloat16, packed, scale)),
                      ("norm tail, then apply",
                       lambda: bitmask.apply(norm_tail.norm_tail_triton(x, rstd, w, torch.bfloat16), packed, scale)))
        for name, fn in cases:
            rows.append({"shape": "x".join(map(str, shape)), "call": name, "same bits": same,
                         "GPU us": round(dev_time(fn) * 1e6, 1), "host us": round(host_us(fn), 1)})
    print_rows("bitmask passes, H200", rows)


if __name__ == "__main__":
    main()
