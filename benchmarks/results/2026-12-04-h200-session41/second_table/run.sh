#!/bin/bash
# Session 41, through the device tool (nvidia-h200), a fifth machine start, code of the commit that adds this: the
# issue-6 configurations of the table again (how much the host's speed moves them), then the separate script.
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 300 python tools/bench_step.py --configs plain,baseline,intra_inter,intra_inter+checkpoint --out $OUT \
    --budget-s 190 --gpu-work-steps 2 2>&1 | grep -v Warn > $OUT/bench.txt
tail -14 $OUT/bench.txt
timeout 200 python benchmarks/experiments/independent_ratios.py --rounds 3 2>&1 | grep -v Warn > $OUT/independent.txt
tail -20 $OUT/independent.txt
