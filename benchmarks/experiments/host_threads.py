"""Does the host's own thread pool slow a hooked step's Python? (session 27)

The hooks' Python runs ~1.7x slower inside a step than the same calls in a loop, and a host's speed differs up to 2x
between machine starts and even between two runs in one start (docs/benchmarks.md, session 27). One cause that
would hit Python and spare plain's C++: CPU-side torch ops in the step running on torch's intra-op pool, whose
OpenMP workers then spin on cores the main thread wants. This counts the ops of one replayed step whose outputs
are CPU tensors (a ``TorchDispatchMode``: none means the pool is idle), then times steps with torch's intra-op
threads at their default and at 1, alternated in blocks in one process: event time of the forward and backward, and
the forward's host time.

    TRITON_INTERPRET=0 PYTHONPATH=. python benchmarks/experiments/host_threads.py [intra_inter@2] [4x1024]
"""

import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from tools.bench_step import Bench, all_configs, build_model, build_parser, make_batch, warmup_for  # noqa: E402


class CpuOps(TorchDispatchMode):
    """Counts aten ops by the device of their first tensor output."""

    def __init__(self):
        super().__init__()
        self.ops = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        first = out[0] if isinstance(out, (tuple, list)) and out else out
        if isinstance(first, torch.Tensor) and first.device.type == "cpu":
            self.ops[str(func)] += 1
        return out


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "intra_inter@2"
    b, s = map(int, (sys.argv[2] if len(sys.argv) > 2 else "4x1024").split("x"))
    args = build_parser().parse_args(["--layers", "8"])
    args.shape_list = [(b, s)]
    dev = torch.device("cuda")
    bench = Bench(build_model(args, dev), dev)
    bench.batch = make_batch(args.vocab, b, s, dev, 0)
    cfg = {c.name: c for c in all_configs()}[name]
    for _ in range(warmup_for(cfg, None) + 2):
        loss, _ = bench.forward(cfg)
        loss.backward()
        bench.model.zero_grad(set_to_none=True)
    bench.sync()
    probe = CpuOps()
    with probe:
        loss, _ = bench.forward(cfg)
        loss.backward()
    bench.model.zero_grad(set_to_none=True)
    bench.sync()
    print(f"{name} {b}x{s}: aten ops with a CPU output in one step (forward and backward): "
          f"{sum(probe.ops.values())} {dict(probe.ops.most_common(8))}")
    default = torch.get_num_threads()
    rows: dict[int, list] = {default: [], 1: []}
    for _ in range(3):
        for threads in (default, 1):
            torch.set_num_threads(threads)
            for _ in range(6):
                bench.sync()
                e0, e1, e2 = (torch.cuda.Event(enable_timing=True) for _ in range(3))
                t0 = time.perf_counter()
                e0.record()
                loss, _ = bench.forward(cfg)
                e1.record()
                host = time.perf_counter() - t0
                loss.backward()
                e2.record()
                bench.sync()
                bench.model.zero_grad(set_to_none=True)
                rows[threads].append((host, e0.elapsed_time(e1) / 1e3, e1.elapsed_time(e2) / 1e3))
    torch.set_num_threads(default)
    print(f"{'threads':>7} {'fwd host ms':>11} {'fwd ms':>7} {'bwd ms':>7} {'step ms':>7}  (medians of 18 steps)")
    for threads, r in rows.items():
        med = [statistics.median(x[i] for x in r) * 1e3 for i in range(3)]
        step = statistics.median((x[1] + x[2]) for x in r) * 1e3
        print(f"{threads:7d} {med[0]:11.2f} {med[1]:7.2f} {med[2]:7.2f} {step:7.2f}")


if __name__ == "__main__":
    main()
