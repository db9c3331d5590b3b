#!/usr/bin/env bash
# session 16: aten calls and launches a step, plain / baseline / intra_inter@2 (commit before the Bound fix)
export TRITON_INTERPRET=0 PYTHONPATH=.
python benchmarks/experiments/host_calls.py --configs plain,baseline,intra_inter@2 --layers 8 --shape 4x1024 --steps 2 --rows 30 > $OUT/calls.txt 2>&1
