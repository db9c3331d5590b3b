"""Where the GPU waits for the host in one step (session 19): idle gaps between kernels, and what the host was doing.

For each configuration: warm-up steps, then one profiled step (``tools/profile_step.py``'s model and step); from
the profiler's trace, every gap of at least ``--min-us`` between consecutive GPU activities, summed per phase
(``bench::forward`` / ``bench::backward``), and the largest gaps with the host ops around the launch that ended
each (the innermost CPU ops containing it). ``intra_inter_full_fuse`` does less GPU work than ``intra_inter`` at
1x8192 but takes as long a step (docs/benchmarks.md session 19): this shows where its GPU idles.

    TRITON_INTERPRET=0 PYTHONPATH=. python benchmarks/experiments/gpu_gaps.py \\
        --configs intra_inter@2,intra_inter_full_fuse@2 --shape 1x8192 --layers 8
"""

import bisect
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from tools.bench_step import all_configs, warmup_for  # noqa: E402
from tools.profile_step import _step, build_parser, shape_bench  # noqa: E402

_GPU = ("kernel", "gpu_memcpy", "gpu_memset")


def gaps(trace: dict, min_us: float, top: int) -> None:
    events = trace["traceEvents"]
    gpu = sorted((e for e in events if e.get("cat") in _GPU and e.get("ph") == "X"), key=lambda e: e["ts"])
    launches = {e["args"].get("correlation"): e for e in events
                if e.get("cat") == "cuda_runtime" and e.get("ph") == "X" and "args" in e}
    cpu_ops = sorted((e for e in events if e.get("cat") in ("cpu_op", "user_annotation", "python_function")
                      and e.get("ph") == "X"), key=lambda e: e["ts"])
    phases = [e for e in cpu_ops if e["name"] in ("bench::forward", "bench::backward")]
    starts = [e["ts"] for e in cpu_ops]

    def phase_of(ts: float) -> str:
        for p in phases:  # the GPU side lags the host: a kernel belongs to the phase that launched it
            if p["ts"] <= ts <= p["ts"] + p["dur"]:
                return p["name"].split("::")[1]
        return "outside"

    def host_context(ts: float) -> str:
        i = bisect.bisect_right(starts, ts)
        inside = [e for e in cpu_ops[max(0, i - 400):i] if e["ts"] + e["dur"] >= ts and e["name"] not in
                  ("bench::forward", "bench::backward")]
        inside.sort(key=lambda e: e["dur"])
        return " < ".join(e["name"][:40] for e in inside[:4]) or "(no op)"

    if not gpu:
        print("  no GPU activity in the trace")
        return
    rows, idle = [], defaultdict(float)
    busy = sum(e["dur"] for e in gpu)
    for prev, nxt in zip(gpu, gpu[1:]):
        gap = nxt["ts"] - (prev["ts"] + prev["dur"])
        if gap < min_us:
            continue
        launch = launches.get(nxt.get("args", {}).get("correlation"))
        at = launch["ts"] if launch is not None else nxt["ts"]
        phase = phase_of(at)
        idle[phase] += gap
        rows.append((gap, phase, nxt["name"][:50], host_context(at)))
    span = gpu[-1]["ts"] + gpu[-1]["dur"] - gpu[0]["ts"]
    print(f"  GPU span {span / 1e3:.1f} ms, busy {busy / 1e3:.1f} ms; idle in gaps >= {min_us:g} us: "
          + ", ".join(f"{k} {v / 1e3:.2f} ms" for k, v in sorted(idle.items())))
    for gap, phase, kernel, ctx in sorted(rows, reverse=True)[:top]:
        print(f"  {gap:8.0f} us  {phase:8s}  before {kernel:50s}  host: {ctx}")


def main() -> None:
    p = build_parser()
    p.add_argument("--configs", default="intra_inter@2,intra_inter_full_fuse@2")
    p.add_argument("--min-us", type=float, default=20.0)
    p.add_argument("--gaps", type=int, default=15)
    args = p.parse_args()
    by_name = {c.name: c for c in all_configs()}
    bench = shape_bench(args)
    for name in args.configs.split(","):
        cfg = by_name[name]
        for _ in range(warmup_for(cfg, None) + 2):
            _step(bench, cfg)
        acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
        with torch.profiler.profile(activities=acts) as prof:
            _step(bench, cfg)
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "trace.json"
            prof.export_chrome_trace(str(path))
            trace = json.loads(path.read_text())
        print(f"{name} at {args.shape}, {args.layers} layers:")
        gaps(trace, args.min_us, args.gaps)
        bench.free()


if __name__ == "__main__":
    main()
