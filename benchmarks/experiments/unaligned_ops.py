"""Which of a step's elementwise ops run CUDA's unvectorized path (session 18).

ATen vectorizes a contiguous elementwise kernel only when every pointer is aligned to the vector's bytes; the
session-18 profile showed the SwiGLU product rebuilt in backward by ``unrolled_elementwise_kernel`` (vector
size 1) at ~2 TB/s. This runs bench_step's model under a configuration for a few steps and, in the last, logs
every aten call in forward or backward whose tensors include one of at least ``--min-numel`` elements whose data
pointer is not 16-byte aligned: op, phase, and each tensor's shape, dtype, strides, storage offset, pointer mod 16.

    PYTHONPATH=. python benchmarks/experiments/unaligned_ops.py --config intra_inter@2 --layers 2 --shape 1x8192
"""
import sys
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, ".")
from tools.bench_step import all_configs, warmup_for  # noqa: E402
from tools.profile_step import build_parser, shape_bench  # noqa: E402


class Unaligned(TorchDispatchMode):
    def __init__(self, min_numel: int):
        super().__init__()
        self.min_numel = min_numel
        self.seen: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        flat = [a for a in (*args, *(kwargs or {}).values(), *(out if isinstance(out, (tuple, list)) else (out,)))
                if isinstance(a, torch.Tensor)]
        if any(t.numel() >= self.min_numel and t.data_ptr() % 16 for t in flat):
            phase = "backward" if torch._C._current_graph_task_id() != -1 else "forward"
            desc = "; ".join(f"{tuple(t.shape)} {str(t.dtype)[6:]} st{t.stride()} off{t.storage_offset()} "
                             f"p%16={t.data_ptr() % 16}" for t in flat)
            self.seen[(phase, str(func), desc)] += 1
        return out


def main() -> None:
    p = build_parser()
    p.add_argument("--min-numel", type=int, default=1 << 20)
    args = p.parse_args()
    cfg = {c.name: c for c in all_configs()}[args.config]
    bench = shape_bench(args)
    for _ in range(warmup_for(cfg, args.warmup)):
        loss, _ = bench.forward(cfg)
        loss.backward()
    mode = Unaligned(args.min_numel)
    with mode:
        loss, _ = bench.forward(cfg)
        loss.backward()
    print(f"{args.config} {args.shape} {args.layers} layers: {sum(mode.seen.values())} unaligned calls")
    for (phase, func, desc), n in sorted(mode.seen.items(), key=lambda kv: -kv[1]):
        print(f"  {n:4d}x {phase:<8} {func}: {desc}")


if __name__ == "__main__":
    main()
