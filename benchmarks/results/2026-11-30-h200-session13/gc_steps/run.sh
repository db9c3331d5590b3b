#!/bin/bash
# Session 13: per-step forward host time against Python's garbage collections and the CUDA allocator's device
# calls (alloc.py), then gc as is / frozen after warm-up / disabled during each step, alternated (gcmodes.py).
export TRITON_INTERPRET=0
python benchmarks/results/2026-11-30-h200-session13/gc_steps/alloc.py > $OUT/alloc.txt 2>&1
python benchmarks/results/2026-11-30-h200-session13/gc_steps/gcmodes.py > $OUT/gcmodes.txt 2>&1
