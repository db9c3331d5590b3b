#!/usr/bin/env bash
# session 17: q/k's RoPE'd LoRA part subtracted / added in the kernel's pass. GPU check of the kernel, then
# session 16's last commit (055f890, unpacked into .scratch/ab17/old by `git archive 055f890 hyclora_hooks kernels tools policies pyproject.toml`) against this tree, alternated twice in one machine start, then aten calls.
set -u
export TRITON_INTERPRET=0
PYTHONPATH=. python tools/check_rope_part.py > $OUT/check.txt 2>&1
tail -8 $OUT/check.txt
bash benchmarks/ab_step.sh .scratch/ab17/old intra_inter@2  # (the loop was inline when it ran; same commands)
PYTHONPATH=. python benchmarks/experiments/host_calls.py --configs plain,intra_inter@2 --layers 8 --shape 4x1024 --steps 2 --rows 20 2>&1 | grep -v "USDT\|Warn\|warn" > $OUT/calls.txt
head -6 $OUT/calls.txt
