#!/usr/bin/env bash
# session 16: session 15's last commit (7335caa, with session 16's bench_step.py for --rounds) against this
# session's (the RMSNorm tail and LoRA part kernels, replayed steps fused too), alternated twice, one machine start;
# then the aten calls of the new tree
set -u
export TRITON_INTERPRET=0
bash benchmarks/ab_step.sh .scratch/ab3/old intra_inter@2  # (the loop was inline when it ran; same commands)
PYTHONPATH=. python benchmarks/experiments/host_calls.py --configs plain,intra_inter@2 --layers 8 --shape 4x1024 --steps 2 --rows 20 2>&1 | grep -v "USDT\|Warn\|warn" > $OUT/calls.txt
head -6 $OUT/calls.txt
