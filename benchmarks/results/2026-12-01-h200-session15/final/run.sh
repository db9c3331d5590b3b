#!/usr/bin/env bash
# session 15, final: bench_step's intra_inter rows with the 2-bit groups of 128 (commit after 39e3cfc), then the
# independent ratio script, one machine start
set -u
export TRITON_INTERPRET=0 PYTHONPATH=.
python tools/bench_step.py --configs intra_inter,intra_inter_full_fuse,intra_inter+checkpoint --out $OUT --budget-s 300 > $OUT/bench.txt 2>&1
python benchmarks/experiments/independent_ratios.py --rounds 3 > $OUT/independent.txt 2>&1
tail -18 $OUT/bench.txt; tail -24 $OUT/independent.txt
