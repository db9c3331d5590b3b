#!/usr/bin/env bash
# session 16: the fused RMSNorm tail. Kernel check, then bench_step old (HEAD~1) / new, GPU work, one machine start
set -u
export TRITON_INTERPRET=0
PYTHONPATH=. python tools/check_norm_tail.py > $OUT/check.txt 2>&1
bash benchmarks/ab_step.sh .scratch/ab/old intra_inter@2  # (the loop was inline when it ran; same commands)
tail -14 $OUT/check.txt
