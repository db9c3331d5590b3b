#!/usr/bin/env bash
# A step A/B in one machine start: `bash benchmarks/ab_step.sh OLD_TREE CONFIGS` runs tools/bench_step.py (6 timed
# steps over 2 rounds, GPU work over 2 steps) for CONFIGS from OLD_TREE (a `git archive` of the older commit's
# hyclora_hooks kernels tools policies pyproject.toml) and from the repository root, alternated twice, writing each
# run's output to $OUT/{old,new}-N.txt and its JSON under $OUT/{old,new}/, then prints each run's table.
set -u
old=$1 configs=$2
for tree in old new old new; do
  if [ $tree = old ]; then d=$old; else d=.; fi
  mkdir -p $OUT/$tree
  (cd $d && PYTHONPATH=. python tools/bench_step.py --configs $configs --steps 6 --rounds 2 --gpu-work-steps 2 --out $OUT/$tree) > $OUT/$tree-$RANDOM.txt 2>&1
done
for f in $OUT/old-*.txt $OUT/new-*.txt; do echo "== $f"; tail -8 $f | head -7; done
