#!/bin/bash
# Session 39, through the device tool (nvidia-h200), from the repository root: a replayed 4x1024 forward's host
# time with the parts of a unit's entry and exit timed (host_parts.py's `units`), twice, then with the pack path's
# parts (`fine`), for intra_inter@2.
export TRITON_INTERPRET=0 PYTHONPATH=.
for i in 1 2; do
  timeout 150 python benchmarks/experiments/host_parts.py intra_inter@2 4x1024 units 2>&1 | grep -v Warn > $OUT/units_$i.txt
  head -20 $OUT/units_$i.txt
done
timeout 150 python benchmarks/experiments/host_parts.py intra_inter@2 4x1024 fine 2>&1 | grep -v Warn > $OUT/fine.txt
head -42 $OUT/fine.txt
