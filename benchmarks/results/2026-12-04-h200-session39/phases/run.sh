#!/bin/bash
# Session 39, through the device tool (nvidia-h200), from the repository root: a replayed 4x1024 forward's host time
# before the first decoder layer, in the layers and after the last (forward_phases.py), twice.
export TRITON_INTERPRET=0 PYTHONPATH=.
for i in 1 2; do
  timeout 200 python benchmarks/experiments/forward_phases.py plain,intra_inter@2,intra_inter@4 2>&1 | grep -v Warn > $OUT/phases_$i.txt
  cat $OUT/phases_$i.txt
done
