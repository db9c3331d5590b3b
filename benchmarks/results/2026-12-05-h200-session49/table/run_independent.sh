#!/bin/bash
# Session 49 (copied from session 47, unrun there), through the device tool (nvidia-h200), from the repository root: the separate
# script on the public API alone, after run.sh.
export TRITON_INTERPRET=0 PYTHONPATH=.
timeout 170 python benchmarks/experiments/independent_ratios.py --rounds 3 2>&1 | grep -v Warn > $OUT/independent.txt
tail -20 $OUT/independent.txt
