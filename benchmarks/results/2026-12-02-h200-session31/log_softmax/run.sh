#!/bin/bash
# Session 31, through the device tool (nvidia-h200, one machine start), from the repository root
export TRITON_INTERPRET=0 PYTHONPATH=.
python tools/check_log_softmax.py > $OUT/check_log_softmax.txt 2>&1
python benchmarks/experiments/kernel_diff.py --shapes 4x1024,1x8192 --configs intra_inter@2 > $OUT/kernel_diff.txt 2>&1
