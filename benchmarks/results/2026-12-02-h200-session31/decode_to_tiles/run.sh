#!/bin/bash
# Session 31, through the device tool (nvidia-h200), from the repository root: the element kernel's decode into fp32,
# tiles, warps and where its outlier channels are written (code of the commit that adds this)
export TRITON_INTERPRET=0 PYTHONPATH=.
python benchmarks/experiments/decode_to_tiles.py > $OUT/decode_to_tiles.txt 2>&1
