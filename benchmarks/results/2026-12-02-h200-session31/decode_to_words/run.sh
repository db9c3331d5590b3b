#!/bin/bash
# Session 31, through the device tool (nvidia-h200, one machine start), from the repository root: a stored bf16
# tensor decoded into fp32 by the word kernel (code of 380c674, taken out again after this run): bits and times
# against the decode then the cast, replayed steps against deciding copies bit for bit, then a step's kernels
export TRITON_INTERPRET=0 PYTHONPATH=.
python benchmarks/experiments/dequant_wide.py > $OUT/dequant_wide.txt 2>&1
python tools/check_replay.py --deterministic strict --layers 4 --shape 1x1024 --host-shape 4x1024 --steps 4 \
    --presets intra_inter@2,intra_inter@4 2>&1 | tail -6 > $OUT/check_replay.txt
python benchmarks/experiments/kernel_diff.py --shapes 4x1024,1x8192 --configs intra_inter@2 > $OUT/kernel_diff.txt 2>&1
