#!/bin/bash
# session 18: the one-read token-group quantize kernel in the library: bits and time against the copy (bench_quant's
# token_group rows, 4 bits, groups of 128 and 64), then a step A/B against the commit before it (.scratch/ab1/old:
# `git archive <that commit> hyclora_hooks kernels tools policies pyproject.toml`)
export TRITON_INTERPRET=0 PYTHONPATH=.
for g in 128 64; do
  python tools/bench_quant.py --sizes-mib 64,256 --bits 4 --group-size $g > $OUT/bench_quant-g$g.txt 2>&1
  grep -i "token\|exact\|mismatch" $OUT/bench_quant-g$g.txt | head -8
done
bash benchmarks/ab_step.sh .scratch/ab1/old intra_inter@2
