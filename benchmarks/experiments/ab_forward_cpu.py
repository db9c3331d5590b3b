"""A/B of a compressed forward's host time on the dev CPU: one tree against another, alternated by the caller.

The GPU machine's host speed moves by up to 2x between starts; the dev CPU is steadier for host-only changes. With
8 tiny Llama layers at 1 x 16 tokens the forward is all host work (hooks, planning, launches of tiny ops). Run
once per tree, alternating, and compare medians:

    git archive <rev> hyclora_hooks kernels tools policies | tar -x -C .scratch/ab/old
    for i in 1 2; do python benchmarks/experiments/ab_forward_cpu.py .scratch/ab/old
                     python benchmarks/experiments/ab_forward_cpu.py . ; done

argv: the tree's root (default .), the policy (default intra_inter). Prints ``<tree> <policy> fwd <ms> bwd <ms>``
(medians of 40 steps after 6 of warm-up, one thread).
"""

import statistics
import sys
import time
from pathlib import Path

root = sys.argv[1] if len(sys.argv) > 1 else "."
policy = sys.argv[2] if len(sys.argv) > 2 else "intra_inter"
sys.path.insert(0, root)

import torch  # noqa: E402

import hyclora_hooks as hy  # noqa: E402
from tools.bench_step import build_model, build_parser, make_batch  # noqa: E402

torch.set_num_threads(1)
args = build_parser().parse_args(["--device", "cpu", "--layers", "8", "--hidden", "128", "--intermediate", "256",
                                  "--heads", "4", "--kv-heads", "4", "--vocab", "256"])
args.shape_list = [(1, 16)]
model = build_model(args, torch.device("cpu"))
batch = make_batch(256, 1, 16, torch.device("cpu"), 0)
fwd, bwd = [], []
for i in range(46):
    t0 = time.perf_counter()
    with hy.compress(policy, model=model, bits=4):
        loss = model(**batch).loss
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    for p in model.parameters():
        p.grad = None
    if i >= 6:
        fwd.append(t1 - t0)
        bwd.append(t2 - t1)
print(f"{Path(root).resolve().name} {policy} fwd {statistics.median(fwd) * 1e3:.2f} bwd {statistics.median(bwd) * 1e3:.2f}")
