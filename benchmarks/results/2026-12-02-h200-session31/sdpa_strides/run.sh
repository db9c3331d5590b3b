#!/bin/bash
# Session 31, through the device tool (nvidia-h200), from the repository root: the SDPA recompute's output viewed with
# the saved strides where only size-1 dims differ (code of the commit that adds this): replayed steps against
# deciding copies at a batch of one, then a 1x8192 step's kernels against plain's
export TRITON_INTERPRET=0 PYTHONPATH=.
python tools/check_replay.py --deterministic strict --layers 4 --shape 1x1024 --host-shape 1x1024 --steps 2 \
    --presets intra_inter@2,intra_inter@4 2>&1 | tail -6 > $OUT/check_replay.txt
python benchmarks/experiments/kernel_diff.py --shapes 1x8192 --configs intra_inter@2 > $OUT/kernel_diff.txt 2>&1
