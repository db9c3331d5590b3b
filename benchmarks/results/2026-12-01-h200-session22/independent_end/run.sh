#!/bin/bash
# session 22's end: the separate script's ratios on the session's final code, its own machine start
export TRITON_INTERPRET=0 PYTHONPATH=.
timeout 280 python benchmarks/experiments/independent_ratios.py --rounds 3 > $OUT/independent.txt 2>&1
echo "rc=$?"; tail -24 $OUT/independent.txt
