#!/bin/bash
# Session 30, through the device tool (nvidia-h200, one machine start), from the repository root
export TRITON_INTERPRET=0 PYTHONPATH=.
python benchmarks/experiments/bitmask_speed.py > $OUT/bitmask_speed.txt 2>&1
python benchmarks/experiments/dropout_masks.py > $OUT/dropout_masks.txt 2>&1
python benchmarks/experiments/kernel_diff.py --shapes 4x1024 --configs intra_inter@2 --lora-dropout 0.05 --top 30 \
    > $OUT/kernel_diff_dropout.txt 2>&1
