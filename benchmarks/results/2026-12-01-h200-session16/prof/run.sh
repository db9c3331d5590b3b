#!/usr/bin/env bash
# session 16: host time of a forward and a backward at 1x64 (GPU idle), 2 layers, plain / baseline / intra_inter@2,
# then a cProfile of replayed intra_inter@2 forwards (commit 30e8b91)
export TRITON_INTERPRET=0 PYTHONPATH=.
python benchmarks/results/2026-12-01-h200-session16/prof/hosttime.py > $OUT/hosttime.txt 2>&1
python benchmarks/experiments/forward_cprofile.py intra_inter@2 > $OUT/cprofile-ii2.txt 2>&1
