#!/usr/bin/env bash
# session 16: a plain LoRA part in one pass. Kernel check, then bench_step old (the norm-tail commit) / new,
# GPU work, one machine start
set -u
export TRITON_INTERPRET=0
PYTHONPATH=. python tools/check_lora_part.py > $OUT/check.txt 2>&1
bash benchmarks/ab_step.sh .scratch/ab2/old intra_inter@2  # (the loop was inline when it ran; same commands)
tail -16 $OUT/check.txt
