#!/bin/bash
# Session 43, through the device tool (nvidia-h200), from the repository root, code of the commit that adds this:
# bench_step's GPU-work phase at small size (the refactored set-up), then profiler_residue.py twice more each way,
# alternated (Kineto's default, TEARDOWN_CUPTI=1), each in its own process, one machine start.
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 120 python tools/bench_step.py --layers 2 --shapes 1x256 --configs intra_inter,checkpoint --steps 4 \
    --gpu-work-steps 2 --out $OUT/smoke 2>&1 | grep -v Warn | tail -9 > $OUT/smoke.txt
cat $OUT/smoke.txt
for i in 1 2; do
  timeout 150 python benchmarks/experiments/profiler_residue.py --steps 8 2>&1 | grep -v Warn > $OUT/default$i.txt
  tail -8 $OUT/default$i.txt
  TEARDOWN_CUPTI=1 timeout 150 python benchmarks/experiments/profiler_residue.py --steps 8 2>&1 | grep -v Warn > $OUT/teardown$i.txt
  tail -8 $OUT/teardown$i.txt
done
