#!/bin/bash
# Session 36, through the device tool (nvidia-h200), from the repository root: compress() without the tree's walk
# in a replayed step (NOTE [Unchecked walk]) against walking it at construction as before ("walk every step"),
# steps alternated in one process, the shipped code twice (session 35's order effect); then the forward's host time
# by part with the change.
export TRITON_INTERPRET=0 PYTHONPATH=.
python benchmarks/experiments/step_exposure.py --shapes 4x1024 --configs intra_inter@2,intra_inter@4 --steps 25 \
  --variants "as is,walk every step,as is again" 2>&1 | grep -v Warn | tail -11 | tee $OUT/steps.txt
python benchmarks/experiments/host_parts.py intra_inter@2 4x1024 2>&1 | grep -v Warn | tee $OUT/host_parts.txt
