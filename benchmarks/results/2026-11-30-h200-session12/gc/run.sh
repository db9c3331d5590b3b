#!/bin/bash
# Session 12, device run 4: the step's spread against Python's garbage collector.
export TRITON_INTERPRET=0
PYTHONPATH=. python benchmarks/results/2026-11-30-h200-session12/gc/gcx.py --shapes 4x1024 --steps 10 > $OUT/gc.txt 2>&1
tail -18 $OUT/gc.txt
