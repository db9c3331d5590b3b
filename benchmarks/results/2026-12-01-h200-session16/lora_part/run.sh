#!/usr/bin/env bash
# session 16: a plain LoRA part in one pass. Kernel check, then bench_step old (the norm-tail commit) / new,
# GPU work, one machine start
set -u
export TRITON_INTERPRET=0
PYTHONPATH=. python tools/check_lora_part.py > $OUT/check.txt 2>&1
for tree in old new old new; do
  if [ $tree = old ]; then d=.scratch/ab2/old; else d=.; fi
  mkdir -p $OUT/$tree
  (cd $d && PYTHONPATH=. python tools/bench_step.py --configs intra_inter@2 --steps 6 --rounds 2 --gpu-work-steps 2 --out $OUT/$tree) > $OUT/$tree-$RANDOM.txt 2>&1
done
tail -16 $OUT/check.txt
for f in $OUT/old-*.txt $OUT/new-*.txt; do echo "== $f"; tail -6 $f | head -5; done
