#!/usr/bin/env bash
# session 19 final (commit 7aa595c: the code of session 18 with the select fix): issue 6's run (bench_step defaults, GPU work 2 steps) then the separate script, one machine start
set -u
export TRITON_INTERPRET=0 PYTHONPATH=.
python tools/bench_step.py --out $OUT --budget-s 360 --gpu-work-steps 2 > $OUT/bench.txt 2>&1
timeout 200 python benchmarks/experiments/independent_ratios.py --rounds 3 > $OUT/independent.txt 2>&1
tail -22 $OUT/bench.txt; tail -14 $OUT/independent.txt
