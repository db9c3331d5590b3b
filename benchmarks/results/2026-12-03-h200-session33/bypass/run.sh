#!/bin/bash
# Session 33, through the device tool (nvidia-h200), from the repository root: replayed units' bodies without the
# global module hooks (NOTE [Replay units] rule 7) against with them, steps alternated in one process
set -x
export TRITON_INTERPRET=0 PYTHONPATH=.
python benchmarks/experiments/step_exposure.py --shapes 4x1024 --configs intra_inter@2,intra_inter@4,baseline \
    --steps 30 --variants "as is,hooked bodies" 2>&1 | grep -v Warn > $OUT/bypass_4x1024.txt
python benchmarks/experiments/step_exposure.py --shapes 1x8192 --configs intra_inter@2 --steps 10 \
    --variants "as is,hooked bodies" 2>&1 | grep -v Warn > $OUT/bypass_1x8192.txt
tail -11 $OUT/bypass_4x1024.txt; tail -5 $OUT/bypass_1x8192.txt
