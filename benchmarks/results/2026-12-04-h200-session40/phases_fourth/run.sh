#!/bin/bash
# Session 40, through the device tool (nvidia-h200), a fourth machine start: forward and backward walls of a 4x1024
# step with the fused LoRA sum and with peft's (alternated), and a replayed forward's host phases.
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 120 python benchmarks/experiments/step_exposure.py --shapes 4x1024 --configs intra_inter@2 \
    --variants "as is,peft sum,as is again" --steps 20 2>&1 | grep -v Warn > $OUT/exposure.txt
tail -7 $OUT/exposure.txt
timeout 90 python benchmarks/experiments/forward_phases.py plain,intra_inter@2 2>&1 | grep -v Warn > $OUT/phases.txt
tail -4 $OUT/phases.txt
