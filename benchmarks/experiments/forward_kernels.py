"""Where the forward's GPU work goes (session 14): the forward alone under the torch profiler, by aten op and by
kernel, for plain and a compressed configuration, and the difference. The backward runs outside the profiled
window, so its kernels are not counted.

    PYTHONPATH=. python benchmarks/experiments/forward_kernels.py --configs plain,intra_inter@2 --shape 1x8192
    python benchmarks/experiments/forward_kernels.py --device cpu --layers 1 --shape 1x64 --hidden 256 \\
        --intermediate 512 --heads 4 --kv-heads 4 --vocab 512      # smoke test on CPU (self CPU time)
"""

import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
from torch.autograd import DeviceType  # noqa: E402

from tools.bench_step import all_configs, warmup_for  # noqa: E402
from tools.profile_step import build_parser, shape_bench  # noqa: E402

p = build_parser()
p.add_argument("--configs", default="plain,intra_inter@2")
p.add_argument("--rows", type=int, default=25)
args = p.parse_args()
bench = shape_bench(args)
dev, cuda = bench.device, bench.cuda
by_name = {c.name: c for c in all_configs()}


def forward_profile(cfg) -> tuple[dict, dict, float]:
    """(aten op -> [calls, device us], kernel -> [calls, device us], forward device ms) a forward."""
    bench.warm(cfg, warmup_for(cfg, None))  # calibration over (its per-step top-k would be counted otherwise)
    ops, kernels, total = defaultdict(lambda: [0, 0.0]), defaultdict(lambda: [0, 0.0]), 0.0
    for _ in range(args.steps):
        bench.model.zero_grad(set_to_none=True)
        acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
        with torch.profiler.profile(activities=acts) as prof:
            loss, _ = bench.forward(cfg)
            bench.sync()
        loss.backward()
        bench.sync()
        for e in prof.key_averages():
            t = e.self_device_time_total if cuda else e.self_cpu_time_total
            if not t:
                continue
            is_kernel = cuda and e.device_type == DeviceType.CUDA
            table = kernels if is_kernel else ops
            table[e.key][0] += e.count
            table[e.key][1] += t
            if is_kernel or not cuda:
                total += t
    n = args.steps
    scale = lambda d: {k: (c / n, us / n) for k, (c, us) in d.items()}  # noqa: E731
    return scale(ops), scale(kernels), total / n / 1e3


results = {name: forward_profile(by_name[name]) for name in args.configs.split(",")}
base = args.configs.split(",")[0]
print(f"forward GPU work a step ({'device' if cuda else 'CPU self'} time), {args.layers} layers, {args.shape}, "
      f"{torch.cuda.get_device_name(dev) if cuda else 'cpu'}, torch {torch.__version__}")
for name, (_, _, total) in results.items():
    print(f"  {name:24s} {total:8.2f} ms")
for what, idx in (("aten op", 0), ("kernel", 1)):
    for name in results:
        if name == base:
            continue
        mine, theirs = results[name][idx], results[base][idx]
        keys = set(mine) | set(theirs)
        diff = sorted(keys, key=lambda k: -(mine.get(k, (0, 0))[1] - theirs.get(k, (0, 0))[1]))
        print(f"\n{what}s: {name} minus {base} (calls a step, ms a step), largest {args.rows}")
        for k in diff[:args.rows]:
            c1, t1 = mine.get(k, (0, 0.0))
            c0, t0 = theirs.get(k, (0, 0.0))
            print(f"  {t1 / 1e3 - t0 / 1e3:+8.3f} ms  {c1:6.0f} vs {c0:6.0f} calls  {k[:110]}")
