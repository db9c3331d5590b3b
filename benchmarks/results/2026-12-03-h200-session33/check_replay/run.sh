#!/bin/bash
# Session 33, through the device tool (nvidia-h200), from the repository root: replayed steps against deciding copies
# with NOTE [Replay units] rules 7 and 8 (code of the commit that adds this)
export TRITON_INTERPRET=0 PYTHONPATH=.
python tools/check_replay.py --deterministic strict --layers 4 --shape 1x1024 --host-shape 1x1024 --steps 3 \
    --presets intra_inter@2,intra_inter@4,baseline 2>&1 | grep -v Warn | tail -8 > $OUT/check_replay.txt
cat $OUT/check_replay.txt
