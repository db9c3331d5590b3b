#!/bin/bash
# Session 49, through the device tool (nvidia-h200), from the repository root: the separate script on the public API
# alone, after run.sh (its own call: session 49's first try lost the machine before it started).
export TRITON_INTERPRET=0 PYTHONPATH=.
timeout 280 python benchmarks/experiments/independent_ratios.py --rounds 4 2>&1 | grep -v Warn > $OUT/independent.txt
tail -20 $OUT/independent.txt
