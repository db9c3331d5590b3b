#!/bin/bash
# Session 12, device run 10: replay's gradients against two deciding copies (GPU kernels may sum in varying order).
export TRITON_INTERPRET=0
PYTHONPATH=. python tools/check_replay.py --layers 2 --shape 1x1024 --steps 4 --presets baseline,intra@2,intra_inter@2 > $OUT/check_replay.txt 2>&1
tail -10 $OUT/check_replay.txt
