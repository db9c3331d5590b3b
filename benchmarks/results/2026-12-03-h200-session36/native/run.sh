#!/bin/bash
# Session 36, through the device tool (nvidia-h200), from the repository root, with .venv/bin/py-spy (0.4.3) carried:
# where a replayed 4x1024 step's host time goes down to native frames (Python's interpreter, torch's C++, the CUDA
# driver), sampled by py-spy --native at 250 Hz over plain's and intra_inter@2's timed steps (the stacks of the
# model's build and warm-up are dropped by the fold below: only stacks under `timed_steps` count).
export TRITON_INTERPRET=0 PYTHONPATH=.
cat > /tmp/loop.py <<'PY'
import sys, time
sys.path.insert(0, '.')
import torch
from tools.bench_step import Bench, all_configs, build_model, build_parser, make_batch, warmup_for
args = build_parser().parse_args(["--layers", "8"]); args.shape_list = [(4, 1024)]
bench = Bench(build_model(args, torch.device("cuda")), torch.device("cuda"))
bench.batch = make_batch(args.vocab, 4, 1024, torch.device("cuda"), 0)
for name in sys.argv[1:]:
    cfg = {c.name: c for c in all_configs()}[name]
    bench.warm(cfg, warmup_for(cfg, None) + 2)
    def timed_steps(cfg=cfg):
        t = bench.timed_steps(cfg, 60)
        print(name, "step ms median", sorted(t["step"])[30] * 1e3, "fwd", sorted(t["fwd"])[30] * 1e3, flush=True)
    globals()["timed_steps_" + name.replace("@", "_")] = timed_steps
    timed_steps()
PY
.venv/bin/py-spy record --native --rate 250 --format raw -o $OUT/stacks.txt -- python /tmp/loop.py plain intra_inter@2 2>&1 | grep -v Warn | tail -5
ls -la $OUT
