#!/bin/bash
# Session 14: session 12's pending-cap experiment again, now that replayed steps no longer drop their plan.
export TRITON_INTERPRET=0
PYTHONPATH=. python benchmarks/results/2026-11-30-h200-session12/pending_cap/cap.py --shapes 1x8192,4x1024 --steps 8 > $OUT/cap.txt 2>&1
tail -32 $OUT/cap.txt
