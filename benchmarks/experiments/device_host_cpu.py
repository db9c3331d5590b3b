"""The host path of the GPU's step, timed on the dev CPU (session 48): a proxy for A/B tests of host work without a GPU.

Earlier CPU timings (``host_ab_cpu.py``, ``host_call_counts.py``) ran the CPU's paths: every kernel's reference
in torch ops, which the device never runs. Here the CPU takes the device's paths as ``tools/check_compile.py``
records them (``check_compile.as_on_device``: every ``use_triton`` yes, the device's compile-time choices, under
``TRITON_INTERPRET=1``), and a kernel launch is not run (``kernel[grid](...)`` returns at once; outputs keep what
``torch.empty`` gave them, so the numbers are meaningless). What is left is the host's work of the device's step
less each launch's own cost (~5-13 us on an H200's host through ``kernels/launch.py``, docs/benchmarks.md
session 41): ``tools/bench_step.py``'s 8 layers at toy widths, one thread, thread CPU time, medians.

    python benchmarks/experiments/device_host_cpu.py plain,baseline,intra_inter@2,intra_inter@4 [--steps 30]
    python benchmarks/experiments/device_host_cpu.py intra_inter@2 --set hyclora_hooks.norm_node.ENABLED=False
    python benchmarks/experiments/device_host_cpu.py intra_inter@2 --profile tottime [--phase backward]  # cProfile, 10 steps
"""

import argparse
import ast
import cProfile
import importlib
import io
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "1"  # before any kernel module builds
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from tools import check_compile  # noqa: E402
from tools.bench_step import Bench, all_configs, build_model, build_parser, make_batch  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("configs", help="comma list of tools/bench_step.py configs")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--profile", choices=("tottime", "cumulative"), help="then cProfile 10 steps' forwards of each")
    p.add_argument("--set", action="append", default=[], metavar="MODULE.NAME=VALUE",
                   help="set a switch first, e.g. hyclora_hooks.norm_node.ENABLED=False (a Python literal)")
    p.add_argument("--phase", choices=("forward", "backward"), default="forward", help="the phase --profile profiles")
    a = p.parse_args()
    check_compile.as_on_device(90, run_kernels=False)
    for setting in a.set:
        name, _, value = setting.partition("=")
        module, _, attr = name.rpartition(".")
        setattr(importlib.import_module(module), attr, ast.literal_eval(value))
    torch.set_num_threads(1)
    args = build_parser().parse_args(["--device", "cpu", "--layers", "8"] + check_compile.TINY)
    args.shape_list = [(1, 16)]
    cpu = torch.device("cpu")
    bench = Bench(build_model(args, cpu), cpu)
    bench.batch = make_batch(args.vocab, 1, 16, cpu, 0)
    configs = {c.name: c for c in all_configs()}

    def step(cfg, prof=None):
        bench.model.zero_grad(set_to_none=True)
        fwd, bwd = (prof, None) if a.phase == "forward" else (None, prof)
        t0 = time.thread_time()
        loss, _ = fwd.runcall(bench.forward, cfg) if fwd else bench.forward(cfg)
        t1 = time.thread_time()
        bwd.runcall(loss.backward) if bwd else loss.backward()
        return t1 - t0, time.thread_time() - t1

    for name in a.configs.split(","):
        cfg = configs[name]
        for _ in range(8):  # the recording step, calibration, replayed steps
            step(cfg)
        fwd, bwd = zip(*(step(cfg) for _ in range(a.steps)))
        print(f"{name}: forward {statistics.median(fwd) * 1e3:.2f} ms, backward {statistics.median(bwd) * 1e3:.2f} ms")
        if a.profile:
            prof = cProfile.Profile()
            for _ in range(10):
                step(cfg, prof)
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats(a.profile).print_stats(45)
            print(out.getvalue())


if __name__ == "__main__":
    main()
