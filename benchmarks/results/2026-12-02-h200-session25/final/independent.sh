#!/usr/bin/env bash
set -u
export TRITON_INTERPRET=0 PYTHONPATH=.
timeout 560 python benchmarks/experiments/independent_ratios.py --rounds 3 > $OUT/independent.txt 2>&1
tail -24 $OUT/independent.txt
