#!/bin/bash
# Session 39, through the device tool, the call after run.sh: the same ratios by the separate script.
export TRITON_INTERPRET=0 PYTHONPATH=.
python benchmarks/experiments/independent_ratios.py --rounds 3 2>&1 | grep -v Warn > $OUT/independent.txt
tail -20 $OUT/independent.txt
