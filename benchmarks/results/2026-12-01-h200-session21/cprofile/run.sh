#!/bin/bash
# session 21: where a replayed forward's host time goes now (8 layers at 1x64, the GPU idle; 10 forwards under
# cProfile after warm-up), intra_inter@2 against baseline
export TRITON_INTERPRET=0 PYTHONPATH=.
for c in baseline intra_inter@2; do
  python benchmarks/experiments/forward_cprofile.py $c --layers 8 > $OUT/cprofile-${c/@/-}.txt 2>&1; echo "$c rc=$?"
  head -3 $OUT/cprofile-${c/@/-}.txt
done
