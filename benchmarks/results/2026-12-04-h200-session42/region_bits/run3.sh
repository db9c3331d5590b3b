#!/bin/bash
# Session 42, through the device tool (nvidia-h200), code of the commit that adds this: tools/check_region_sums.py
# at the benchmark's shape (8 layers, 4x1024) with cuDNN's deterministic attention backward (run2.sh's second/ read
# intra_inter@4's step with region sums 0.0049 from four steps without that agreed with each other bit for bit).
export TRITON_INTERPRET=0 PYTHONPATH=.
timeout 250 python tools/check_region_sums.py --layers 8 --shape 4x1024 --deterministic strict --noise-steps 1 2>&1 | grep -v Warn > $OUT/strict_benchmark_shape.txt
tail -8 $OUT/strict_benchmark_shape.txt
