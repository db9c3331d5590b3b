#!/bin/bash
# Session 34, through the device tool (nvidia-h200), from the repository root: Python's cyclic GC and a 4x1024
# step: as shipped, with the collector off for the step (collections after the clock stops: a bound), and off for
# the forward alone (on again at the context's exit). step_exposure.py, variants alternated step by step.
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python benchmarks/experiments/step_exposure.py --shapes 4x1024 --configs intra_inter@2,intra_inter@4 --steps 30 \
    --variants "as is,gc off,gc off in forward" 2>&1 | grep -v Warn > $OUT/gc_4x1024.txt; tail -11 $OUT/gc_4x1024.txt
