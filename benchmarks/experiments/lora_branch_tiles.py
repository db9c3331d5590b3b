"""Tiles of the LoRA branch's backward kernels (``kernels/lora_branch.py``), swept at the benchmark's shapes
(session 44).

For each setting of the module's tile constants (rows and columns of a tile, the run of tiles a program sums, warps)
``branch_grads`` runs the three passes as the node runs them (a 16-bit gradient, the fp32 input as a replayed step
unpacks it), is checked against ``branch_grads_ref`` (the largest difference of each result against its largest
element), and timed (CUDA events, medians); the products autograd's backward of peft's ops runs (the node's ``"ref"``
backward) are timed in the same run as the baseline. Totals are per step of ``tools/bench_step.py``'s model (per
layer q, k, v, o at 4096 -> 4096, gate and up at 4096 -> 11008, down at 11008 -> 4096; 8 layers).

    TRITON_INTERPRET=0 PYTHONPATH=. python benchmarks/experiments/lora_branch_tiles.py --tokens 4096,8192
    TRITON_INTERPRET=1 python benchmarks/experiments/lora_branch_tiles.py --device cpu --tokens 96 --hidden 64 \\
        --intermediate 96 --reps 1 --settings 64,64,8,4
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from hyclora_hooks import lora_branch  # noqa: E402
from hyclora_hooks.kernels import lora_branch as kernels  # noqa: E402
from ab_setup import layer_linears, median_ms as _median_ms  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--device", default="cuda")
p.add_argument("--tokens", default="4096")
p.add_argument("--hidden", type=int, default=4096)
p.add_argument("--intermediate", type=int, default=11008)
p.add_argument("--rank", type=int, default=16)
p.add_argument("--layers", type=int, default=8)
p.add_argument("--reps", type=int, default=20)
p.add_argument("--settings", default="64,64,8,4;32,64,8,4;64,128,8,4;64,64,16,4;64,64,4,4;128,64,8,8;64,128,4,8;"
                                     "32,128,8,4;128,128,4,8",
               help="rows,cols,iters,warps; ...")
args = p.parse_args()
dev = torch.device(args.device)
cuda = dev.type == "cuda"
S = 2.0


def median_ms(fn) -> float:
    return _median_ms(fn, args.reps, cuda, 2)


def operands(t: int, n_in: int, n_out: int):
    gen = torch.Generator(device=dev).manual_seed(t + n_in + n_out)
    g = torch.randn(t, n_out, device=dev, generator=gen).bfloat16()
    xf = torch.randn(t, n_in, device=dev, generator=gen).bfloat16().float()
    a = torch.randn(args.rank, n_in, device=dev, generator=gen) / n_in ** 0.5
    b = torch.randn(n_out, args.rank, device=dev, generator=gen) / args.rank ** 0.5
    return g, xf, xf @ a.t(), a, b


H, I = args.hidden, args.intermediate
shapes = layer_linears(H, I)
settings = [tuple(int(v) for v in s.split(",")) for s in args.settings.split(";")]
name = torch.cuda.get_device_name(dev) if cuda else "cpu"
print(f"{name} | torch {torch.__version__} | r={args.rank}; medians of {args.reps}; ms a step of {args.layers} layers")
print("| tokens | setting (rows, cols, iters, warps) | ms a step | against autograd's products | largest error |")
print("|---|---|---|---|---|")
for t in (int(v) for v in args.tokens.split(",")):
    ops = {s: operands(t, *s) for s in shapes}
    base = sum(k * args.layers * median_ms(lambda o=ops[s]: lora_branch._autograd_products(
        o[0], o[1], o[2], o[3], o[4], S, torch.bfloat16, (True, True, True))) for s, k in shapes.items())
    print(f"| {t} | autograd's products (fp32) | {base:.2f} | 1.000 | 0 |")
    for setting in settings:
        kernels._BT, kernels._BC, kernels._ITERS, kernels._WARPS = setting
        err, total = 0.0, 0.0
        for s, k in shapes.items():
            g, xf, h, a, b = ops[s]
            got = kernels.branch_grads(g, xf, h, a, b, S, torch.bfloat16)
            ref = kernels.branch_grads_ref(g, xf, h, a, b, S, torch.bfloat16)
            err = max([err] + [float((u.float() - v.float()).abs().max() / v.float().abs().max())
                                for u, v in zip(got, ref)])
            total += k * args.layers * median_ms(lambda: kernels.branch_grads(g, xf, h, a, b, S, torch.bfloat16))
        print(f"| {t} | {setting} | {total:.2f} | {total / base:.3f} | {err:.1e} |")
