#!/bin/bash
# Session 41, through the device tool (nvidia-h200), a sixth machine start, code of the commit that adds this: a
# replayed 4x1024 forward's and backward's host time by part (host_parts.py's `fine`), `@2` then `@4`.
export TRITON_INTERPRET=0 PYTHONPATH=.
timeout 140 python benchmarks/experiments/host_parts.py intra_inter@2 4x1024 fine 2>&1 | grep -v Warn > $OUT/fine_2.txt
head -45 $OUT/fine_2.txt
timeout 120 python benchmarks/experiments/host_parts.py intra_inter@4 4x1024 fine 2>&1 | grep -v Warn > $OUT/fine_4.txt
head -3 $OUT/fine_4.txt
