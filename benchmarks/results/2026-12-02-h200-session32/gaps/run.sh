#!/bin/bash
# Session 32, through the device tool (nvidia-h200), from the repository root: where the GPU idles in one 1x8192
# step with the fused head (code of the commit that adds this), against plain: the "What is left (session 32)" item
export TRITON_INTERPRET=0 PYTHONPATH=.
python benchmarks/experiments/gpu_gaps.py --configs plain,intra_inter@2 --shape 1x8192 --layers 8 \
    2>&1 | grep -v Warn > $OUT/gpu_gaps.txt
head -80 $OUT/gpu_gaps.txt
