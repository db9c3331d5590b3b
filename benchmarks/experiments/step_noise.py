"""What makes a replayed step's host time move from step to step (session 37): per step, the forward's wall time
(from inside the context's entry to its exit, so neither the construction nor the exit's wait), the calling
thread's CPU time over the same stretch (``time.thread_time``), and the process's page faults and context switches
(``getrusage``) and the machine's steal time (``/proc/stat``) over it. Plain's steps and the configuration's are
alternated one by one; the table compares the configuration's faster and slower halves of steps.

If a slow forward's CPU time grows with its wall time, the thread ran but ran slower (the host's caches, its clock,
a sibling hyperthread); if only the wall time grows, the thread was off the CPU (preempted: involuntary switches,
steal); page faults that grow with it would point at memory handed back to the system and taken again.

``--pin``: the configuration's steps alternate between the process as it is and the process held to one CPU
(``os.sched_setaffinity``): does the thread moving between CPUs explain it?

    TRITON_INTERPRET=0 PYTHONPATH=. python benchmarks/experiments/step_noise.py --shapes 4x1024 --configs intra_inter@2
    python benchmarks/experiments/step_noise.py --device cpu --tiny --shapes 1x16 --steps 20
"""
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

import hyclora_hooks as hy  # noqa: E402
from ab_setup import ab_cases, ab_parser, ab_setup, synchronizer  # noqa: E402

FIELDS = ("step ms", "fwd wall ms", "fwd cpu ms", "minflt", "majflt", "nvcsw", "nivcsw", "steal ticks")


def _steal() -> int:
    """The machine's steal time so far, in clock ticks (0 where ``/proc/stat`` has none)."""
    try:
        with open("/proc/stat") as fh:
            parts = fh.readline().split()
        return int(parts[8]) if len(parts) > 8 else 0
    except OSError:
        return 0


def _counters() -> tuple:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return (time.perf_counter(), time.thread_time(), u.ru_minflt, u.ru_majflt, u.ru_nvcsw, u.ru_nivcsw, _steal())


def main() -> None:
    p = ab_parser(__doc__, "4x1024", "intra_inter@2", 40)
    p.add_argument("--pin", action="store_true", help="alternate the configuration's steps unpinned / on one CPU")
    a = p.parse_args()
    cpus = os.sched_getaffinity(0)
    args, shapes, dev, model = ab_setup(a)
    sync = synchronizer(dev)
    cuda = dev.type == "cuda"

    def step(preset, bits):
        model.zero_grad(set_to_none=True)
        sync()
        ev = [torch.cuda.Event(enable_timing=True) for _ in range(2)] if cuda else []
        t0 = time.perf_counter()
        if cuda:
            ev[0].record()
        ctx = hy.compress(preset, model=model, **({"bits": bits} if bits else {})) if preset else None
        if ctx is not None:
            ctx.__enter__()
        c0 = _counters()
        try:
            loss = model(**batch).loss
            c1 = _counters()
        finally:
            if ctx is not None:
                ctx.__exit__(None, None, None)
        loss.backward()
        if cuda:
            ev[1].record()
        sync()
        total = ev[0].elapsed_time(ev[1]) if cuda else (time.perf_counter() - t0) * 1e3
        d = [y - x for x, y in zip(c0, c1)]
        return (total, d[0] * 1e3, d[1] * 1e3, *d[2:])

    for shape, batch, spec, preset, bits in ab_cases(a, args, shapes, dev):
        for _ in range(3):  # calibration and the recording step
            step(None, None)
            step(preset, bits)
        plain, got, pinned = [], [], []
        for _ in range(a.steps):
            plain.append(step(None, None))
            got.append(step(preset, bits))
            if a.pin:
                os.sched_setaffinity(0, {min(cpus)})
                pinned.append(step(preset, bits))
                os.sched_setaffinity(0, cpus)
        print(f"\n{shape} {spec}, steps in order (step ms / fwd cpu ms): "
              + " ".join(f"{r[0]:.0f}/{r[2]:.0f}" for r in got))
        if pinned:
            print(f"{shape} {spec} on one CPU, in order: " + " ".join(f"{r[0]:.0f}/{r[2]:.0f}" for r in pinned))
        got.sort(key=lambda r: r[0])
        half = len(got) // 2
        print(f"\n{shape} {spec}: {a.steps} steps alternated with plain's; medians (plain's step "
              f"{statistics.median(r[0] for r in plain):.1f} ms, its forward's wall {statistics.median(r[1] for r in plain):.1f} ms)")
        print("| steps | " + " | ".join(FIELDS) + " |")
        print("|---|" + "---|" * len(FIELDS))
        arms = [("faster half", got[:half]), ("slower half", got[half:]), ("plain", plain)]
        for name, rows in arms + ([("on one CPU", pinned)] if pinned else []):
            print(f"| {name} | " + " | ".join(f"{statistics.median(r[i] for r in rows):.1f}" for i in range(len(FIELDS)))
                  + " |")
        print("every step of the configuration, fastest first (step ms, fwd wall, fwd cpu, minflt, nivcsw, steal):")
        print("  " + "; ".join(f"{r[0]:.0f} {r[1]:.0f} {r[2]:.0f} {r[3]} {r[6]} {r[7]}" for r in got))


if __name__ == "__main__":
    main()
