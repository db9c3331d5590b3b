#!/bin/bash
# Session 37, through the device tool (nvidia-h200), from the repository root: the unit-pack checks written out
# (variant "helper unit packs" = session 36's way), alternated step by step at 4x1024, then the issue-6 table.
mkdir -p $OUT && export TRITON_INTERPRET=0 PYTHONPATH=.
timeout 200 python benchmarks/experiments/step_exposure.py --shapes 4x1024 --configs intra_inter@2,intra_inter@4 --steps 20 \
  --variants "as is,helper unit packs,as is again" 2>&1 | grep -v Warn > $OUT/exposure.txt
tail -9 $OUT/exposure.txt
python tools/bench_step.py --out $OUT --budget-s 250 --gpu-work-steps 2 2>&1 | grep -v Warn > $OUT/bench.txt
tail -24 $OUT/bench.txt
