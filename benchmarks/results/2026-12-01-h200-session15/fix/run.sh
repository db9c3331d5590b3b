#!/usr/bin/env bash
# session 15, third run (after rule 11 for recipe sources, commit 39e3cfc): the independent ratio script with each
# row's set-up made from a clean state, then breakdown.py's bytes with and without the embedding output needing grad
set -u
export TRITON_INTERPRET=0 PYTHONPATH=.
python benchmarks/experiments/independent_ratios.py > $OUT/independent.txt 2>&1
python benchmarks/results/2026-12-01-h200-session15/breakdown/breakdown.py > $OUT/breakdown.txt 2>&1
tail -24 $OUT/independent.txt; grep "mem x" $OUT/breakdown.txt
