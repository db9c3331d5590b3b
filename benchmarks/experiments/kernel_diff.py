"""Which kernels a configuration adds to plain's step, by name and phase: the GPU work gap, itemised.

For each shape, plain (no context) and each ``--configs`` entry run warm-up steps, then ``--steps`` steps under
torch's profiler; every kernel's device time is summed by name and by phase (forward or
backward: the host range it was launched in) and the table lists the
kernels whose time a step differs most from plain's. ``--lora-dropout`` builds peft's LoRA with that dropout
(session 29's case). Session 30, issue 6:

    TRITON_INTERPRET=0 PYTHONPATH=. python benchmarks/experiments/kernel_diff.py --shapes 1x8192
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from benchmarks.experiments.ab_setup import ab_cases, ab_parser, ab_setup, synchronizer  # noqa: E402
from tools.profile_step import kernels_in_ranges  # noqa: E402

_PHASES = ("bench::forward", "bench::backward")  # bench_step's range names: not kernels on the GPU timeline


def one_step(model, batch, preset, bits):
    import hyclora_hooks as hy

    model.zero_grad(set_to_none=True)
    with torch.profiler.record_function(_PHASES[0]):
        if preset == "plain":
            loss = model(**batch).loss
        else:
            with hy.compress(preset, model=model, **({"bits": bits} if bits else {})):
                loss = model(**batch).loss
    with torch.profiler.record_function(_PHASES[1]):
        loss.backward()


def kernel_times(prof) -> dict[tuple[str, str], list[float]]:
    """(phase, kernel name) -> [launches, device ms]: each kernel by the phase it was launched in."""
    out: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0])
    for phase, name, us in kernels_in_ranges(prof, "bench::"):
        cell = out[(phase, name)]
        cell[0] += 1
        cell[1] += us / 1e3
    return out


def main() -> int:
    p = ab_parser(__doc__, "4x1024,1x8192", "intra_inter@2", 3)
    p.add_argument("--warmup", type=int, default=8)
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--width", type=int, default=70)
    a = p.parse_args()
    args, shapes, dev, model = ab_setup(a)
    sync = synchronizer(dev)
    activities = [torch.profiler.ProfilerActivity.CPU]  # the host's launches place each kernel in a phase
    if dev.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    cases = list(ab_cases(a, args, shapes, dev))
    plain_cases = {c[0]: (c[0], c[1], "plain", "plain", None) for c in cases}
    seen: set[str] = set()
    for case in cases:
        for shape, batch, spec, preset, bits in ([plain_cases[case[0]]] if case[0] not in seen else []) + [case]:
            seen.add(shape)
            for _ in range(a.warmup):
                one_step(model, batch, preset, bits)
            sync()
            with torch.profiler.profile(activities=activities) as prof:
                for _ in range(a.steps):
                    one_step(model, batch, preset, bits)
                sync()
            times = kernel_times(prof)
            if spec == "plain":
                base = times
                continue
            keys = set(base) | set(times)
            diff = sorted(keys, key=lambda k: -abs(times.get(k, [0, 0])[1] - base.get(k, [0, 0])[1]))
            n = a.steps
            for phase in ("forward", "backward"):
                tb = sum(v[1] for k, v in base.items() if k[0] == phase) / n
                tc = sum(v[1] for k, v in times.items() if k[0] == phase) / n
                print(f"{shape} {spec} {phase}: kernels {tc:.2f} ms a step, plain {tb:.2f} ms ({tc - tb:+.2f})")
            tb = sum(v[1] for v in base.values()) / n
            tc = sum(v[1] for v in times.values()) / n
            print(f"{shape} {spec} (lora_dropout {a.lora_dropout}): all kernels {tc:.2f} ms a step, plain {tb:.2f} "
                  f"ms, {tc / max(tb, 1e-9):.3f}x")
            print(f"  {'phase':8} {'plain ms':>9} {'cfg ms':>9} {'diff':>8} {'n plain':>8} {'n cfg':>6}  kernel")
            for k in diff[:a.top]:
                b_n, b_ms = base.get(k, [0, 0.0])
                c_n, c_ms = times.get(k, [0, 0.0])
                print(f"  {k[0]:8} {b_ms / n:9.3f} {c_ms / n:9.3f} {(c_ms - b_ms) / n:+8.3f} {b_n / n:8.0f} "
                      f"{c_n / n:6.0f}  {k[1][:a.width]}")
            print(flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
