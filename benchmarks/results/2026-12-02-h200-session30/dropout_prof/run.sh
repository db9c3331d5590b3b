#!/bin/bash
# Session 30, through the device tool (nvidia-h200, one machine start), from the repository root
export TRITON_INTERPRET=0 PYTHONPATH=.
python tools/profile_step.py --config intra_inter@2 --layers 8 --shape 4x1024 --lora-dropout 0.05 --cprofile 0 \
    --top 30 --sort device --by-recipe --recipe-kernels 10 --warmup 8 > $OUT/prof-dropout-4x1024.txt 2>&1
python benchmarks/experiments/kernel_diff.py --shapes 4x1024 --configs intra_inter@2 --lora-dropout 0.05 --top 40 \
    > $OUT/kernel_diff_dropout.txt 2>&1
