#!/usr/bin/env bash
# session 17: token-group word decodes 128 channels wide (kernels/quant.py _WORD_TOKEN_COLS). The decode by tile
# width, then d1564f9 (unpacked into .scratch/ab20/old by `git archive d1564f9 hyclora_hooks kernels tools policies
# pyproject.toml`) against this tree, alternated twice in one machine start.
set -u
export TRITON_INTERPRET=0
PYTHONPATH=. python benchmarks/experiments/token_group_decode_tiles.py > $OUT/token_tiles.txt 2>&1
cat $OUT/token_tiles.txt
bash benchmarks/ab_step.sh .scratch/ab20/old intra_inter@2,intra_inter@4  # (the loop was inline when it ran; same commands)
