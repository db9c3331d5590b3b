#!/bin/bash
# Session 12, device run 3: step time and peak against the pending non-finite cap.
export TRITON_INTERPRET=0
PYTHONPATH=. python benchmarks/results/2026-11-30-h200-session12/pending_cap/cap.py --shapes 4x1024,1x8192 --steps 8 > $OUT/cap.txt 2>&1
tail -32 $OUT/cap.txt
