#!/bin/bash
export TRITON_INTERPRET=0
python benchmarks/results/2026-11-30-h200-session13/prof/prof.py > $OUT/prof.txt 2>&1
tail -8 $OUT/prof.txt
