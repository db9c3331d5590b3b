#!/bin/bash
# Session 40, through the device tool (nvidia-h200), a third machine start: 4x1024's step ratios (the shape the
# host's speed moves), a replayed forward's host phases, then the separate script.
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 200 python tools/bench_step.py --shapes 4x1024 --configs plain,baseline,intra_inter --out $OUT \
    --gpu-work-steps 2 2>&1 | grep -v Warn > $OUT/bench.txt
tail -7 $OUT/bench.txt
timeout 90 python benchmarks/experiments/forward_phases.py plain,intra_inter@2 2>&1 | grep -v Warn > $OUT/phases.txt
tail -8 $OUT/phases.txt
timeout 200 python benchmarks/experiments/independent_ratios.py --rounds 3 2>&1 | grep -v Warn > $OUT/independent.txt
tail -20 $OUT/independent.txt
