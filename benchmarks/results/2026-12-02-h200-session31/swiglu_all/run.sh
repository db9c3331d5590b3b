#!/bin/bash
# Session 31, through the device tool (nvidia-h200, one machine start), from the repository root: the SwiGLU fusion in
# every inter preset (code of f6ab4fe): replayed steps against deciding copies bit for bit, the SiLU + Hadamard
# kernel against torch's ops, then a step's kernels against plain's
export TRITON_INTERPRET=0 PYTHONPATH=.
python tools/check_replay.py --deterministic strict --layers 4 --shape 1x1024 --host-shape 4x1024 --steps 4 \
    --presets intra_inter@2,intra_inter@4,intra_inter_full_fuse@2 2>&1 | tail -8 > $OUT/check_replay.txt
python tools/bench_swiglu.py > $OUT/bench_swiglu.txt 2>&1
python benchmarks/experiments/kernel_diff.py --shapes 4x1024,1x8192 --configs intra_inter@2 > $OUT/kernel_diff.txt 2>&1
