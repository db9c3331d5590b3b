#!/bin/bash
# Session 37, through the device tool (nvidia-h200), from the repository root: what moves a replayed step's host
# time (step_noise.py), then the separate script.
mkdir -p $OUT && export TRITON_INTERPRET=0 PYTHONPATH=.
timeout 200 python benchmarks/experiments/step_noise.py --shapes 4x1024 --configs intra_inter@2,intra_inter@4 --steps 40 2>&1 | grep -v Warn > $OUT/noise.txt
tail -20 $OUT/noise.txt
timeout 200 python benchmarks/experiments/independent_ratios.py --rounds 3 > $OUT/independent.txt 2>&1
grep -A11 "^4x1024\|^1x8192" $OUT/independent.txt
