#!/bin/bash
# Session 14: cProfile of a replayed forward on the H200's host (1x64: the GPU idle), intra_inter@2 and baseline.
export TRITON_INTERPRET=0
for c in intra_inter@2 baseline; do
  PYTHONPATH=. python benchmarks/experiments/forward_cprofile.py $c --layers 8 > $OUT/cprofile-${c/@/-}.txt 2>&1
done
head -60 $OUT/cprofile-intra_inter-2.txt
