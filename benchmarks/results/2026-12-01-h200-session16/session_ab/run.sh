#!/usr/bin/env bash
# session 16: session 15's last commit (7335caa, with session 16's bench_step.py for --rounds) against this
# session's (the RMSNorm tail and LoRA part kernels, replayed steps fused too), alternated twice, one machine start;
# then the aten calls of the new tree
set -u
export TRITON_INTERPRET=0
for tree in old new old new; do
  if [ $tree = old ]; then d=.scratch/ab3/old; else d=.; fi
  mkdir -p $OUT/$tree
  (cd $d && PYTHONPATH=. python tools/bench_step.py --configs intra_inter@2 --steps 6 --rounds 2 --gpu-work-steps 2 --out $OUT/$tree) > $OUT/$tree-$RANDOM.txt 2>&1
done
PYTHONPATH=. python benchmarks/experiments/host_calls.py --configs plain,intra_inter@2 --layers 8 --shape 4x1024 --steps 2 --rows 20 2>&1 | grep -v "USDT\|Warn\|warn" > $OUT/calls.txt
for f in $OUT/old-*.txt $OUT/new-*.txt; do echo "== $f"; tail -6 $f | head -5; done
head -6 $OUT/calls.txt
