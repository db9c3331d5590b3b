#!/bin/bash
# Session 44, second sweep (nvidia-h200), after the fix of the column splits (run.sh's (128, 64, 8, 8) row summed
# half the columns): a few settings around the new default (64, 64, 4, 4).
export TRITON_INTERPRET=0 PYTHONPATH=.
timeout 190 python benchmarks/experiments/lora_branch_tiles.py --tokens 4096,8192 --reps 15 \
    --settings "64,64,4,4;64,64,2,4;64,64,4,2;64,32,4,4;128,64,4,8" 2>&1 | grep -v Warn | tee $OUT/tiles_fixed.txt
