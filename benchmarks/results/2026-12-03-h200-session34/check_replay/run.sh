#!/bin/bash
# Session 34, through the device tool (nvidia-h200), from the repository root: replayed steps against deciding
# copies, bit for bit, with layer 0's decoder layer a unit under intra_inter (NOTE [Replay units] rule 6 taking a
# body tensor at the first call it enters), the collector pause and keep's detach.
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python tools/check_replay.py --deterministic strict --layers 4 --shape 1x1024 --host-shape 1x1024 --steps 3 \
    --presets intra_inter@2,intra_inter@4,baseline 2>&1 | grep -v Warn | tail -8 > $OUT/check_replay.txt
cat $OUT/check_replay.txt
