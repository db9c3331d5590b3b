#!/bin/bash
# Session 38, through the device tool (nvidia-h200), from the repository root: lean LoRA bodies in replayed units
# (NOTE [Replay units] rule 10) against peft's forward ("peft bodies"), alternated step by step at 4x1024.
export TRITON_INTERPRET=0 PYTHONPATH=.
timeout 420 python benchmarks/experiments/step_exposure.py --shapes 4x1024 --configs intra_inter@2,intra_inter@4 \
  --steps 20 --variants "as is,peft bodies,as is again" 2>&1 | grep -v Warn > $OUT/exposure.txt
tail -9 $OUT/exposure.txt
