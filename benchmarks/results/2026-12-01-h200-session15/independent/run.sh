#!/usr/bin/env bash
# session 15, first run: benchmarks/experiments/independent_ratios.py as first written (six rows; it left HF's
# embedding-output hook on after its checkpoint row, so every row after round 0 ran with the embedding output
# requiring grad), then bench_step's rows for the same configurations, one machine start
set -u
export TRITON_INTERPRET=0 PYTHONPATH=.
python benchmarks/experiments/independent_ratios.py > $OUT/independent.txt 2>&1
python tools/bench_step.py --configs checkpoint,intra_inter@2,intra_inter@4,intra_inter+checkpoint@2 --out $OUT --budget-s 240 > $OUT/bench.txt 2>&1
tail -20 $OUT/independent.txt; tail -16 $OUT/bench.txt
