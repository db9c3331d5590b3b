#!/usr/bin/env bash
# session 23: the separate script again on its own machine start (commit 01aef54; the library and script as in final/)
set -u
export TRITON_INTERPRET=0 PYTHONPATH=.
timeout 560 python benchmarks/experiments/independent_ratios.py --rounds 3 > $OUT/independent.txt 2>&1
tail -24 $OUT/independent.txt
