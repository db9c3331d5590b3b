#!/bin/bash
# session 21's end (v's frozen term and the tracker's last changes): the separate script's ratios on the final code
export TRITON_INTERPRET=0 PYTHONPATH=.
timeout 280 python benchmarks/experiments/independent_ratios.py --rounds 3 > $OUT/independent.txt 2>&1
echo "rc=$?"; tail -24 $OUT/independent.txt
