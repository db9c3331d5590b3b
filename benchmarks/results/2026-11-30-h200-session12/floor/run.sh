#!/bin/bash
# Session 12, device run 8: the replay floor, encodes in the model's calibration scope.
export TRITON_INTERPRET=0
PYTHONPATH=. python benchmarks/experiments/replay_floor.py --shapes 4x1024 --steps 10 --gpu-work-steps 2 > $OUT/floor.txt 2>&1
tail -13 $OUT/floor.txt
