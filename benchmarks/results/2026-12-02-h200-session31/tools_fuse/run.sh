#!/bin/bash
# Session 31, through the device tool (nvidia-h200, one machine start), from the repository root: the GPU checks
# whose whole-model half moved to tools/lossless_model.py, then intra_inter@2 against intra_inter_full_fuse@2 kernel
# by kernel at 1x8192
export TRITON_INTERPRET=0 PYTHONPATH=.
python tools/check_norm_tail.py --tokens 4096 > $OUT/check_norm_tail.txt 2>&1
python tools/check_cast_into.py --tokens 4096 > $OUT/check_cast_into.txt 2>&1
python benchmarks/experiments/kernel_diff.py --shapes 1x8192 --configs intra_inter@2,intra_inter_full_fuse@2 \
    > $OUT/kernel_diff_fuse.txt 2>&1
