#!/bin/bash
# Session 49 (copied from session 47, unrun there), through the device tool (nvidia-h200), from the repository root: steps alternated
# as is and with peft's ops in the LoRA branch node's forward ("peft forward": NOTE [LoRA branch] rule 6's A/B).
export TRITON_INTERPRET=0 PYTHONPATH=.
timeout 300 python benchmarks/experiments/step_exposure.py --shapes 4x1024,1x8192 --configs intra_inter@2 \
    --steps 8 --variants "as is,peft forward,as is again" 2>&1 | grep -v Warn > $OUT/exposure_forward.txt
tail -10 $OUT/exposure_forward.txt
