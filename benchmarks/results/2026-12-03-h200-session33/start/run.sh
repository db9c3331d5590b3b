#!/bin/bash
# Session 33, through the device tool (nvidia-h200), from the repository root: rules 7 and 8 of NOTE [Replay units]
# (replayed bodies without the global module hooks; the replay chosen at the first unit-kind call) each taken away,
# steps alternated in one process
set -x
export TRITON_INTERPRET=0 PYTHONPATH=.
python benchmarks/experiments/step_exposure.py --shapes 4x1024 --configs intra_inter@2,intra_inter@4 \
    --steps 30 --variants "as is,first pack,hooked bodies,neither" 2>&1 | grep -v Warn > $OUT/start_4x1024.txt
python benchmarks/experiments/step_exposure.py --shapes 1x8192 --configs intra_inter@2 --steps 10 \
    --variants "as is,neither" 2>&1 | grep -v Warn > $OUT/start_1x8192.txt
tail -13 $OUT/start_4x1024.txt; tail -5 $OUT/start_1x8192.txt
