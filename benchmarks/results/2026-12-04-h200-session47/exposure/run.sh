#!/bin/bash
# Session 47 (NOT RUN: the device machine was taken back during table/run.sh, then no machine was lent; for the next
# session to run after table/run.sh, from a folder of its own), through the device tool (nvidia-h200), from the
# repository root: steps alternated with the LoRA branch node as is (forward kernel, no fp32 copy of its input where
# the record is a widening recipe: NOTE [LoRA branch] rules 6-7), with the copy made again ("fp32 input copy") and
# with peft's ops in its forward ("peft forward"), 4x1024 and 1x8192.
export TRITON_INTERPRET=0 PYTHONPATH=.
timeout 480 python benchmarks/experiments/step_exposure.py --shapes 4x1024,1x8192 --configs intra_inter@2,intra_inter@4 \
    --steps 8 --variants "as is,fp32 input copy,peft forward,as is again" 2>&1 | grep -v Warn > $OUT/exposure.txt
tail -18 $OUT/exposure.txt
