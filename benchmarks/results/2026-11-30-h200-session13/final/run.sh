#!/bin/bash
# Session 13: the issue-6 table (every configuration, both shapes, replay on), then replay vs decide host time
# alternated per step at 4x1024 (8 layers).
export TRITON_INTERPRET=0
PYTHONPATH=. python tools/bench_step.py --out /tmp/final --budget-s 300 > $OUT/final.txt 2>&1
cp /tmp/final/*.json $OUT/final.json
tail -31 $OUT/final.txt
PYTHONPATH=. python tools/check_replay.py --layers 8 --shape 1x1024 --host-shape 4x1024 --steps 8 --presets intra_inter@2,intra@2,baseline > $OUT/check_replay.txt 2>&1
tail -8 $OUT/check_replay.txt
