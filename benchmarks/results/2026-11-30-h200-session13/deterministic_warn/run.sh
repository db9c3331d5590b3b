#!/bin/bash
# Session 13: replay vs decide vs exact with deterministic algorithms asked for (warnings name what is not).
export TRITON_INTERPRET=0
PYTHONPATH=. python tools/check_replay.py --deterministic warn --layers 8 --shape 1x1024 --host-shape 1x64 --steps 5 --presets intra_inter@2,intra@2,baseline > $OUT/check_replay.txt 2>&1
grep -i "warn" $OUT/check_replay.txt | sort | uniq -c | head -20
tail -7 $OUT/check_replay.txt
