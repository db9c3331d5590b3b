#!/bin/bash
export TRITON_INTERPRET=0
PYTHONPATH=. python tools/check_replay.py --layers 8 --shape 1x1024 --host-shape 4x1024 --steps 5 --presets intra_inter@2,intra@2,baseline > $OUT/check_replay.txt 2>&1
tail -12 $OUT/check_replay.txt
