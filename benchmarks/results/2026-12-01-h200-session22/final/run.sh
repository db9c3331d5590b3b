#!/usr/bin/env bash
# session 22 final (the commit that adds this file: q's and k's frozen term stored before RoPE): issue 6's run
# (bench_step defaults, GPU work 2 steps) and the separate script, one machine start
set -u
export TRITON_INTERPRET=0 PYTHONPATH=.
python tools/bench_step.py --out $OUT --budget-s 330 --gpu-work-steps 2 > $OUT/bench.txt 2>&1
timeout 200 python benchmarks/experiments/independent_ratios.py --rounds 3 > $OUT/independent.txt 2>&1
tail -22 $OUT/bench.txt; tail -14 $OUT/independent.txt
