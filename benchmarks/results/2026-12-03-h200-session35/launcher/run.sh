#!/bin/bash
# Session 35, through the device tool (nvidia-h200), from the repository root: direct launches through the compiled
# launcher's C function (NOTE [Direct launch] rule 5): the codec kernels' bytes against the reference (bench_quant's
# correctness rows), a replayed step's gradients against the deciding copy's and exact autograd (check_replay), a
# launch's host time by hand (launch_host_time.py part 1), then steps with and without it alternated in one
# process (the short way twice, around the old one: order/ found the first variant after plain slower).
export TRITON_INTERPRET=0 PYTHONPATH=.
python tools/bench_quant.py --sizes-mib 64 --bits 2,4,8 2>&1 | grep -v Warn | grep -i "correct\|fail" | tee $OUT/bench_quant.txt
python tools/check_replay.py --layers 2 --shape 1x1024 --steps 3 --presets intra_inter@2,intra_inter@4 2>&1 | grep -v Warn | tail -8 | tee $OUT/check_replay.txt
python - <<'PY' 2>&1 | tee $OUT/launch_host.txt
import sys, time, statistics
sys.path.insert(0, '.')
import torch
from hyclora_hooks.kernels import launch as L, quant as Q
x = torch.randn(256, 4096, device='cuda').to(torch.bfloat16)
for _ in range(50): Q.quantize_triton(x, 2, 64, False, 'group')
torch.cuda.synchronize()
res = {True: [], False: []}
for r in range(10):
    for c in (True, False):
        L.C_LAUNCHER = c
        t0 = time.perf_counter()
        for _ in range(300): Q.quantize_triton(x, 2, 64, False, 'group')
        res[c].append((time.perf_counter() - t0) / 300 * 1e6)
        torch.cuda.synchronize()
L.C_LAUNCHER = True
print("quantize 1 MiB host us a call, best of 10 loops: C function", round(min(res[True]), 1), "launcher object", round(min(res[False]), 1))
PY
python benchmarks/experiments/step_exposure.py --shapes 4x1024 --configs intra_inter@2,intra_inter@4 --steps 25 \
  --variants "as is,launcher object,as is again" 2>&1 | grep -v Warn | tail -11 | tee $OUT/steps.txt
