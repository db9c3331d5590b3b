"""What P3's forward costs for a plain LoRA part, and what one GEMM with the subtraction would save (session 14).

P3 stores ``quantize(t - part)`` with ``part = (x·A in bf16) @ (s·B in bf16)ᵀ`` (NOTE [LoRA part] in lineage.py),
for v, gate and up: today five torch calls (two casts, the scaling, the matmul, the subtraction) before the
quantize call. ``torch.addmm(t, xa, sbᵀ, alpha=-1)`` computes the same difference in one GEMM (rounded once from
fp32, so within one bf16 rounding of today's, and no longer the same node as the backward's part). Per shape:
device time (CUDA events, median of ``--reps``) and host time (launches without waiting, median) of today's
sequence, of the addmm variant, and of the quantize call alone; and the largest difference between the two
variants' outputs: the share of elements that differ, and the largest difference against the mean |t| (a 4-bit
code's step is ~1/8 of a group's range).

    PYTHONPATH=. python benchmarks/experiments/lora_part_forward.py --tokens 4096,8192
    python benchmarks/experiments/lora_part_forward.py --device cpu --tokens 64 --widths 256 --reps 3
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from hyclora_hooks.kernels.quant import quantize  # noqa: E402
from tools.check_rope_part import host_us  # noqa: E402
from ab_setup import median_ms  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--device", default="cuda")
p.add_argument("--tokens", default="4096,8192")
p.add_argument("--widths", default="4096,11008", help="output widths N (v: 4096, gate/up: 11008)")
p.add_argument("--rank", type=int, default=16)
p.add_argument("--reps", type=int, default=20)
args = p.parse_args()
dev = torch.device(args.device)
cuda = dev.type == "cuda"
sync = torch.cuda.synchronize if cuda else (lambda: None)
BITS, GROUP = 4, 64  # v and the SwiGLU operands at the 2-bit setting (policies/intra_inter.toml)


def today(t, xA, B, s):
    xa, sb = xA.to(torch.bfloat16), (B * s).to(torch.bfloat16)
    return t - xa @ sb.T


def fused(t, xA, B, s):
    return torch.addmm(t, xA.to(torch.bfloat16), (B * s).to(torch.bfloat16).T, alpha=-1)


def store(src):
    return quantize(src, BITS, GROUP, granularity="token_group")


print(f"{torch.cuda.get_device_name(dev) if cuda else 'cpu'} | torch {torch.__version__} | rank {args.rank} | "
      f"quantize {BITS} bits, token groups of {GROUP}")
print(f"{'T':>6} {'N':>6} | {'device ms: today':>17} {'addmm':>7} {'quant only':>10} | {'host us: today':>15} "
      f"{'addmm':>7} {'quant only':>10} | differ  max/mean|t|")
for T in (int(v) for v in args.tokens.split(",")):
    for N in (int(v) for v in args.widths.split(",")):
        g = torch.Generator(device=dev).manual_seed(0)
        t = torch.randn(T, N, device=dev, generator=g).to(torch.bfloat16)
        xA = torch.randn(T, args.rank, device=dev, generator=g)
        B = torch.randn(N, args.rank, device=dev, generator=g) * 0.01
        a, b = today(t, xA, B, 2.0), fused(t, xA, B, 2.0)
        d = (a.float() - b.float()).abs()
        differ, worst = (d > 0).float().mean().item(), (d.max() / t.float().abs().mean()).item()
        calls = (lambda: store(today(t, xA, B, 2.0)), lambda: store(fused(t, xA, B, 2.0)), lambda: store(t))
        row = [median_ms(c, args.reps, cuda, warmup=0) for c in calls] + [host_us(c, args.reps, sync) for c in calls]
        print(f"{T:>6} {N:>6} | {row[0]:>17.3f} {row[1]:>7.3f} {row[2]:>10.3f} | {row[3]:>15.0f} {row[4]:>7.0f} "
              f"{row[5]:>10.0f} | {differ:6.1%}  {worst:.2e}")
