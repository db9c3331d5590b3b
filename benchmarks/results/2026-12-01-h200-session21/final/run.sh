#!/usr/bin/env bash
# session 21 final (the commit that adds this file: gate's and up's frozen term stored as the forward made it):
# the minimum LoRA-gradient cosine against exact autograd of the old tree ($1, 178835c) and this one at 1x1024
# (check_replay, intra_inter@2 only), then issue 6's run (bench_step defaults, GPU work 2 steps) and the separate
# script, one machine start
set -u
export TRITON_INTERPRET=0
for tree in $1 .; do
  name=$([ $tree = . ] && echo new || echo old)
  (cd $tree && PYTHONPATH=. python tools/check_replay.py --deterministic strict --layers 8 --shape 1x1024 --steps 4 \
    --presets intra_inter@2) > $OUT/cos-$name.txt 2>&1; echo "$name rc=$?"; grep "^{" $OUT/cos-$name.txt | cut -c1-330
done
export PYTHONPATH=.
python tools/bench_step.py --out $OUT --budget-s 330 --gpu-work-steps 2 > $OUT/bench.txt 2>&1
timeout 150 python benchmarks/experiments/independent_ratios.py --rounds 3 > $OUT/independent.txt 2>&1
tail -22 $OUT/bench.txt; tail -14 $OUT/independent.txt
