#!/bin/bash
# Session 42, through the device tool (nvidia-h200), code of the commit that adds this: the as-benchmarked run of
# tools/check_region_sums.py again, with three steps without region sums for the spread (run.sh's first run, first/,
# compared against one: one pair that happened to agree bit for bit made intra_inter@4's row read not ok).
export TRITON_INTERPRET=0 PYTHONPATH=.
timeout 200 python tools/check_region_sums.py --layers 8 --shape 4x1024 2>&1 | grep -v Warn > $OUT/as_benchmarked.txt
tail -8 $OUT/as_benchmarked.txt
