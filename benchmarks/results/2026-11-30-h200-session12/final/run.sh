#!/bin/bash
# Session 12, device run 12: replay against deciding, interleaved per step (gradients, forward host time at 4x1024);
# then the issue-6 table (every configuration, both shapes, replay on: the default).
export TRITON_INTERPRET=0
PYTHONPATH=. python tools/check_replay.py --layers 8 --shape 1x1024 --host-shape 4x1024 --steps 10 --presets intra_inter@2,intra@2 > $OUT/check_replay.txt 2>&1
tail -9 $OUT/check_replay.txt
PYTHONPATH=. python tools/bench_step.py --out /tmp/final --budget-s 300 > $OUT/final.txt 2>&1
cp /tmp/final/*.json $OUT/final.json
tail -31 $OUT/final.txt
