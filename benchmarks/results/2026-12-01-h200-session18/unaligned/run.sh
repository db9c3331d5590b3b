#!/bin/bash
# session 18: the unvectorized elementwise ops of a step (pointers not 16-byte aligned), then the backward's
# decodes with Triton's kernels charged by launch time
export TRITON_INTERPRET=0 PYTHONPATH=.
python benchmarks/experiments/unaligned_ops.py --config intra_inter@2 --layers 2 --shape 1x8192 > $OUT/unaligned-1x8192.txt 2>&1
cut -c1-400 $OUT/unaligned-1x8192.txt | tail -30
python tools/profile_step.py --config intra_inter@2 --layers 8 --shape 1x8192 --cprofile 0 --by-recipe --steps 3 \
  --top 60 --by-shape --recipe-kernels 8 --name-width 110 > $OUT/recipe-kernels-1x8192.txt 2>&1
grep -A 200 "by backward decode kind" $OUT/recipe-kernels-1x8192.txt | grep -B200 -m1 "^top " | head -150
