#!/usr/bin/env bash
# The code this ran is not on main (it made the step slower): apply not-merged.patch to 56d2744 first
# (`git apply benchmarks/results/2026-12-01-h200-session17/decode_lora_add/not-merged.patch`).
# session 17: gate/up's stored frozen parts decoded with their LoRA parts in the dequantize kernel's pass
# (quant.dequantize_lora_add, Entry.decode_lora_add). Bits and timing of the decode, then 56d2744 (unpacked into
# .scratch/ab19/old by `git archive 56d2744 hyclora_hooks kernels tools policies pyproject.toml`) against this tree,
# alternated twice in one machine start.
set -u
export TRITON_INTERPRET=0
PYTHONPATH=. python benchmarks/experiments/dequant_lora_add.py > $OUT/dequant_lora_add.txt 2>&1
cat $OUT/dequant_lora_add.txt
for tree in old new old new; do
  if [ $tree = old ]; then d=.scratch/ab19/old; else d=.; fi
  mkdir -p $OUT/$tree
  (cd $d && PYTHONPATH=. python tools/bench_step.py --configs intra_inter@2,intra_inter@4 --steps 6 --rounds 2 --gpu-work-steps 2 --out $OUT/$tree) > $OUT/$tree-$RANDOM.txt 2>&1
done
for f in $OUT/old-*.txt $OUT/new-*.txt; do echo "== $f"; tail -8 $f | head -7; done
