"""How many aten calls and kernel launches a forward and a backward make (session 16): plain against a compressed
configuration, by op name. On the GPU every aten call is dispatcher work on the host and every launch a driver
call; where the step is bound by the host (4x1024 on a slow host start), these counts are what the hooks add.

    PYTHONPATH=. python benchmarks/experiments/host_calls.py --configs plain,intra_inter@2 --shape 4x1024
    python benchmarks/experiments/host_calls.py --device cpu --layers 1 --shape 1x64 --hidden 256 \\
        --intermediate 512 --heads 4 --kv-heads 4 --vocab 512 --steps 1      # smoke test on CPU
"""

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from tools.bench_step import all_configs, warmup_for  # noqa: E402
from tools.profile_step import build_parser, shape_bench  # noqa: E402

p = build_parser()
p.add_argument("--configs", default="plain,intra_inter@2")
p.add_argument("--rows", type=int, default=20)
args = p.parse_args()
bench = shape_bench(args)
by_name = {c.name: c for c in all_configs()}
LAUNCH = ("cudaLaunchKernel", "cuLaunchKernel", "cuLaunchKernelEx", "cudaLaunchKernelExC")


def counts(cfg) -> dict[str, Counter]:
    """phase -> Counter of aten op names (plus ``launches``), a step, over ``--steps`` steps."""
    bench.warm(cfg, warmup_for(cfg, None))
    out = {"forward": Counter(), "backward": Counter()}
    acts = [torch.profiler.ProfilerActivity.CPU]
    for _ in range(args.steps):
        bench.model.zero_grad(set_to_none=True)
        for phase in ("forward", "backward"):
            with torch.profiler.profile(activities=acts) as prof:
                if phase == "forward":
                    loss, ctx = bench.forward(cfg)
                else:
                    loss.backward()
                bench.sync()
            for e in prof.events():
                if e.name.startswith("aten::"):
                    out[phase][e.name] += 1
                elif e.name in LAUNCH:
                    out[phase]["launches"] += 1
        del loss, ctx
    return {k: Counter({n: c / args.steps for n, c in v.items()}) for k, v in out.items()}


results = {name: counts(by_name[name]) for name in args.configs.split(",")}
base = args.configs.split(",")[0]
print(f"aten calls and launches a step, {args.layers} layers, {args.shape}, "
      f"{torch.cuda.get_device_name(bench.device) if bench.cuda else 'cpu'}, torch {torch.__version__}")
for phase in ("forward", "backward"):
    for name, res in results.items():
        c = res[phase]
        print(f"  {phase:8s} {name:24s} aten calls {sum(v for k, v in c.items() if k != 'launches'):8.0f}   "
              f"launches {c['launches']:6.0f}")
for phase in ("forward", "backward"):
    for name in results:
        if name == base:
            continue
        mine, theirs = results[name][phase], results[base][phase]
        diff = sorted(set(mine) | set(theirs), key=lambda k: -(mine[k] - theirs[k]))
        print(f"\n{phase}: {name} minus {base}, calls a step, largest {args.rows}")
        for k in diff[:args.rows]:
            print(f"  {mine[k] - theirs[k]:+8.0f}  ({mine[k]:.0f} vs {theirs[k]:.0f})  {k}")
