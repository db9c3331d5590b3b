#!/bin/bash
# Session 33, through the device tool (nvidia-h200), from the repository root: the pending-source cap's effect on
# a replayed intra_inter@2 step's time and peak memory (benchmarks/experiments/step_exposure.py --variants)
set -x
export TRITON_INTERPRET=0 PYTHONPATH=.
V="as is,cap 512 MiB,cap 1 GiB,no cap"
python benchmarks/experiments/step_exposure.py --shapes 4x1024 --configs intra_inter@2,intra_inter@4 --steps 30 \
    --variants "$V" 2>&1 | grep -v Warn > $OUT/cap_4x1024.txt
python benchmarks/experiments/step_exposure.py --shapes 1x8192 --configs intra_inter@2 --steps 10 \
    --variants "$V" 2>&1 | grep -v Warn > $OUT/cap_1x8192.txt
tail -13 $OUT/cap_4x1024.txt; tail -7 $OUT/cap_1x8192.txt
