#!/bin/bash
# session 21: the exit's blocking settle against a lazy one (benchmarks/experiments/exit_settle.py), alternated twice
export TRITON_INTERPRET=0 PYTHONPATH=.
for mode in block lazy block lazy; do
  flag=$([ $mode = lazy ] && echo --lazy)
  python benchmarks/experiments/exit_settle.py $flag --configs plain,intra_inter@2,intra_inter+checkpoint@2 --steps 6 \
    --rounds 2 --gpu-work-steps 2 --out $OUT/$mode > $OUT/$mode-$RANDOM.txt 2>&1
done
for f in $OUT/block-*.txt $OUT/lazy-*.txt; do echo "== $f"; tail -10 $f | head -8 | cut -c1-130; done
