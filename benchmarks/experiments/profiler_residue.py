"""Does a torch profiler session slow the host's work in the steps after it (session 43)?

``tools/bench_step.py --gpu-work-steps`` profiles each configuration's steps (``Bench.gpu_work``) in its first
round, in the process that then times the others' steps and the later rounds. Session 43's table read plain's
forward at 28.8 ms of host time and ``intra_inter@2``'s at 61.0 there, against 18.4 and 46.4 in the separate script
run right after it on the same machine start; the separate script never profiles. Kineto leaves CUPTI attached
after a session unless it tears it down (``TEARDOWN_CUPTI``; pytorch#146604 reports 10-20% slower training after
profiling without the teardown), which would add host time to every CUDA call that follows.

This runs, in one process: plain and ``intra_inter@2`` steps alternated (``--steps`` each), then one
``Bench.gpu_work`` session of ``--gpu-work-steps`` steps, the steps again, then ``--sessions`` more profiler
sessions, the steps again. Per phase and configuration: the medians of the step (events) and of the forward's
host time. Run it with and without ``TEARDOWN_CUPTI=1`` in the environment, each in its own process.

    TRITON_INTERPRET=0 PYTHONPATH=. python benchmarks/experiments/profiler_residue.py [--shapes 4x1024]
"""

import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.bench_step import Bench, all_configs, make_batch  # noqa: E402
from ab_setup import ab_parser, ab_setup  # noqa: E402


def main() -> None:
    p = ab_parser(__doc__, "4x1024", "plain,intra_inter@2", 10)
    p.add_argument("--gpu-work-steps", type=int, default=2)
    p.add_argument("--sessions", type=int, default=5)
    a = p.parse_args()
    args, shapes, dev, model = ab_setup(a)
    bench = Bench(model, dev)
    b, s = shapes[0]
    bench.batch = make_batch(args.vocab, b, s, dev, 0)
    by_name = {c.name: c for c in all_configs()}
    cfgs = [by_name[n] for n in a.configs.split(",")]
    rows = []

    def phase(name: str) -> None:
        for cfg in cfgs:
            bench.warm(cfg, 3)
        got = {cfg.name: {"step": [], "fwd_host": []} for cfg in cfgs}
        for _ in range(a.steps):
            for cfg in cfgs:
                t = bench.timed_steps(cfg, 1)
                got[cfg.name]["step"] += t["step"]
                got[cfg.name]["fwd_host"] += t["fwd_host"]
        for cfg in cfgs:
            g = got[cfg.name]
            rows.append((name, cfg.name, statistics.median(g["step"]) * 1e3, statistics.median(g["fwd_host"]) * 1e3))
            print(rows[-1], flush=True)

    def profile(cfg) -> None:  # a CUDA profiler session (none on a CPU: the phases then differ by nothing)
        if bench.cuda:
            bench.gpu_work(cfg, a.gpu_work_steps)

    phase("before")
    profile(cfgs[0])
    phase("after 1 session")
    for i in range(a.sessions):
        profile(cfgs[i % len(cfgs)])
    phase(f"after {1 + a.sessions} sessions")
    first = {r[0]: r[2] for r in rows if r[1] == cfgs[0].name}
    print(f"\nTEARDOWN_CUPTI={os.environ.get('TEARDOWN_CUPTI', '(unset)')} | {b}x{s} | medians, ms")
    print("| phase | config | step | forward host | step / " + cfgs[0].name + " |")
    print("|---|---|---|---|---|")
    for name, k, ms, host in rows:
        print(f"| {name} | {k} | {ms:.1f} | {host:.1f} | {ms / first[name]:.3f} |")


if __name__ == "__main__":
    main()
