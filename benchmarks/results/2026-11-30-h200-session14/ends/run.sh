#!/bin/bash
# Session 14: how each step ends (recorded / replayed / plan dropped) at both shapes, with per-step GC counts.
export TRITON_INTERPRET=0
PYTHONPATH=. python benchmarks/experiments/step_spikes.py --layers 8 --shape 1x8192 --configs intra_inter@2,intra@2 --steps 12 > $OUT/ends-1x8192.txt 2>&1
PYTHONPATH=. python benchmarks/experiments/step_spikes.py --layers 8 --shape 4x1024 --configs intra_inter@2,baseline --steps 12 > $OUT/ends-4x1024.txt 2>&1
