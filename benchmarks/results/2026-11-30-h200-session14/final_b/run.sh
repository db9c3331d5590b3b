#!/bin/bash
# Session 14, second machine start: replay = decide bit for bit after the exit-settle change (deterministic cuDNN
# attention backward), then the issue-6 table again.
export TRITON_INTERPRET=0
PYTHONPATH=. python tools/check_replay.py --deterministic strict --layers 8 --shape 1x1024 --host-shape 4x1024 --steps 4 --presets intra_inter@2,intra_inter@4,baseline > $OUT/check_replay.txt 2>&1
PYTHONPATH=. python tools/bench_step.py --out /tmp/final --budget-s 300 > $OUT/final.txt 2>&1
cp /tmp/final/*.json $OUT/final.json
tail -14 $OUT/check_replay.txt | head -9
tail -29 $OUT/final.txt | head -27
