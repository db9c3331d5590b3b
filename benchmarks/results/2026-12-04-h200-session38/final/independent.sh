#!/bin/bash
# Session 38, second call after run.sh (the same machine start where it was still held): the separate script.
export TRITON_INTERPRET=0 PYTHONPATH=.
timeout 300 python benchmarks/experiments/independent_ratios.py --rounds 3 > $OUT/independent.txt 2>&1
tail -24 $OUT/independent.txt
