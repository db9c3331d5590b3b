#!/usr/bin/env bash
# session 16, final (commit 3dc947a, whose replayed steps still subtracted v/gate/up's parts by torch): the issue-6 run (every configuration, both shapes, bench_step's defaults: 12 timed steps over
# 3 interleaved rounds) with the GPU work, then the independent ratio script, one machine start
set -u
export TRITON_INTERPRET=0 PYTHONPATH=.
python tools/bench_step.py --out $OUT --budget-s 360 --gpu-work-steps 2 > $OUT/bench.txt 2>&1
timeout 200 python benchmarks/experiments/independent_ratios.py --rounds 3 > $OUT/independent.txt 2>&1
tail -30 $OUT/bench.txt; tail -24 $OUT/independent.txt
