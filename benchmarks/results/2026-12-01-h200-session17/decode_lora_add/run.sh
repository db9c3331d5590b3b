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
bash benchmarks/ab_step.sh .scratch/ab19/old intra_inter@2,intra_inter@4  # (the loop was inline when it ran; same commands)
