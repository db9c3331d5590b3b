#!/bin/bash
# session 20: the session's start (af376a2, in $1) against its end (this commit: RoPE part tiles, widening kernel),
# 1x8192, plain and intra_inter@2, GPU work over 3 steps, one machine start, old then new
export TRITON_INTERPRET=0
for tree in $1 .; do
  name=$([ $tree = . ] && echo new || echo old); mkdir -p $OUT/$name
  (cd $tree && PYTHONPATH=. python tools/bench_step.py --shapes 1x8192 --configs plain,intra_inter@2 --steps 6 \
    --rounds 2 --gpu-work-steps 3 --out $OUT/$name) > $OUT/$name.txt 2>&1; echo "$name rc=$?"; tail -5 $OUT/$name.txt | head -3
done
