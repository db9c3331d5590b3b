#!/bin/bash
# Session 34, through the device tool (nvidia-h200), from the repository root: a replayed 4x1024 step's host time by
# part (intra_inter@2, baseline, plain) with the session's changes (the collector pause, layer 0's decoder unit),
# as session 33's host/run.sh; for the next session's list.
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
for c in plain baseline intra_inter@2; do
  python benchmarks/experiments/host_parts.py $c 4x1024 2>&1 | grep -v Warn | tee -a $OUT/host_parts.txt
done
