#!/bin/bash
# Session 30, through the device tool (nvidia-h200, one machine start), from the repository root
export TRITON_INTERPRET=0 PYTHONPATH=.
python benchmarks/experiments/kernel_diff.py --shapes 4x1024,1x8192 --configs intra_inter@2,intra_inter@4 \
    > $OUT/kernel_diff.txt 2>&1
python benchmarks/experiments/kernel_diff.py --shapes 4x1024 --configs intra_inter@2 --lora-dropout 0.05 \
    > $OUT/kernel_diff_dropout.txt 2>&1
python benchmarks/experiments/bitmask_speed.py > $OUT/bitmask_speed.txt 2>&1
# (These files came from kernel_diff.py's first version, code of 12996a3 + the script: its phase column read
# "other" for every kernel, its dropout run set peft's dropouts after building, and bitmask_speed.py was session
# 29's. The per-kernel sums are what later versions print.)
