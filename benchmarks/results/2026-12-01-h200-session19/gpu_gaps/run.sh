#!/bin/bash
# session 19: idle gaps of one profiled 1x8192 step (commit dcc2272)
export TRITON_INTERPRET=0 PYTHONPATH=.
python benchmarks/experiments/gpu_gaps.py --configs plain,intra_inter@2,intra_inter_full_fuse@2 --shape 1x8192 \
  --layers 8 --gaps 12 2>&1 | grep -v Warning | tail -50
