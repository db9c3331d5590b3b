#!/usr/bin/env bash
# session 15, second run: the independent ratio script with the "(inputs need grad)" rows (its hook still leaked:
# all rows ran with it), then breakdown.py: intra_inter@2 bytes by op and group-size variants (copied here); figures in docs/benchmarks.md session 15
set -u
export TRITON_INTERPRET=0 PYTHONPATH=.
python benchmarks/experiments/independent_ratios.py > $OUT/independent.txt 2>&1
python benchmarks/results/2026-12-01-h200-session15/breakdown/breakdown.py > $OUT/breakdown.txt 2>&1
tail -24 $OUT/independent.txt; grep "mem x" $OUT/breakdown.txt
