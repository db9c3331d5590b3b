#!/usr/bin/env bash
# session 17: token-group word decodes 128 channels wide (kernels/quant.py _WORD_TOKEN_COLS). The decode by tile
# width, then d1564f9 (unpacked into .scratch/ab20/old by `git archive d1564f9 hyclora_hooks kernels tools policies
# pyproject.toml`) against this tree, alternated twice in one machine start.
set -u
export TRITON_INTERPRET=0
PYTHONPATH=. python benchmarks/experiments/token_group_decode_tiles.py > $OUT/token_tiles.txt 2>&1
cat $OUT/token_tiles.txt
for tree in old new old new; do
  if [ $tree = old ]; then d=.scratch/ab20/old; else d=.; fi
  mkdir -p $OUT/$tree
  (cd $d && PYTHONPATH=. python tools/bench_step.py --configs intra_inter@2,intra_inter@4 --steps 6 --rounds 2 --gpu-work-steps 2 --out $OUT/$tree) > $OUT/$tree-$RANDOM.txt 2>&1
done
for f in $OUT/old-*.txt $OUT/new-*.txt; do echo "== $f"; tail -8 $f | head -7; done
