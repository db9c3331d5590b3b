"""Step time in a training loop that does not wait for the GPU at every step, against the synchronised steps the
bench times (session 25).

``tools/bench_step.py`` synchronises before each step, so a step's host work never overlaps the GPU work queued by
the step before; a training loop (zero_grad, forward, backward, next step) waits only where something reads the
device (here: ``compress()``'s exit, NOTE [Deferred non-finite check]). Where the forward's host work exceeds its
GPU work (4x1024 on a slow host), the loop can hide it behind the previous backward's queued kernels. Per shape and
configuration, in one process, blocks alternated: the synchronised steps' median wall time, and the unsynchronised
loop's median time between successive steps' starts (and its mean: total over steps, one sync at the end).

    TRITON_INTERPRET=0 PYTHONPATH=. python benchmarks/experiments/loop_time.py [--shapes 4x1024,1x8192]

On the dev CPU (no overlap to find; a check that it runs): ``--device cpu --tiny --shapes 1x16``.
"""

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


from ab_setup import ab_parser, ab_setup  # noqa: E402
from tools.bench_step import Bench, all_configs, make_batch, warmup_for  # noqa: E402


def main() -> None:
    p = ab_parser(__doc__, "4x1024,1x8192", "plain,intra_inter@2,intra_inter@4", 10)
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    args, shapes, dev, model = ab_setup(a)
    bench = Bench(model, dev)
    cfgs = {c.name: c for c in all_configs()}

    def step(cfg):
        bench.model.zero_grad(set_to_none=True)
        loss, _ = bench.forward(cfg)
        loss.backward()

    def synced(cfg, n):
        out = []
        for _ in range(n):
            bench.sync()
            t0 = time.perf_counter()
            step(cfg)
            bench.sync()
            out.append(time.perf_counter() - t0)
        return out

    def loop(cfg, n):
        bench.sync()
        starts = [time.perf_counter()]
        for _ in range(n):
            step(cfg)
            starts.append(time.perf_counter())
        bench.sync()
        end = time.perf_counter()
        gaps = [b - a for a, b in zip(starts, starts[1:])]
        return gaps, (end - starts[0]) / n

    print("| shape | config | synced median ms | loop median ms | loop mean ms | synced x | loop x (median) |")
    print("|---|---|---|---|---|---|---|")
    for b, s in shapes:
        bench.batch = make_batch(args.vocab, b, s, dev, args.seed)
        res = {}
        for name in a.configs.split(","):
            cfg = cfgs[name]
            for _ in range(warmup_for(cfg, None) + 1):
                step(cfg)
            res[name] = ([], [], [])
        for _ in range(a.rounds):
            for name in a.configs.split(","):
                cfg = cfgs[name]
                res[name][0].extend(synced(cfg, a.steps))
                gaps, mean = loop(cfg, a.steps)
                res[name][1].extend(gaps)
                res[name][2].append(mean)
        base = None
        for name, (sy, lo, me) in res.items():
            row = (statistics.median(sy) * 1e3, statistics.median(lo) * 1e3, statistics.mean(me) * 1e3)
            base = base or row
            print(f"| {b}x{s} | `{name}` | {row[0]:.1f} | {row[1]:.1f} | {row[2]:.1f} | {row[0] / base[0]:.2f} "
                  f"| {row[1] / base[1]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
