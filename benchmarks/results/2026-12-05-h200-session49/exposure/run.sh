#!/bin/bash
# Session 49 (copied from session 47, unrun there), through the device tool
# (nvidia-h200), from the repository root: steps alternated as is (the LoRA branch node's forward kernel and no fp32
# copy of its input where the record is a widening recipe, NOTE [LoRA branch] rules 6-7; a decoder layer's norms as
# one node each, NOTE [Norm node]), with Llama's ops in the norms ("llama norms") and with the copy made again ("fp32
# input copy"), 4x1024 and 1x8192. run_forward.sh: the same with peft's ops in the branch node's forward.
export TRITON_INTERPRET=0 PYTHONPATH=.
timeout 450 python benchmarks/experiments/step_exposure.py --shapes 4x1024,1x8192 --configs intra_inter@2,intra_inter@4 \
    --steps 8 --variants "as is,llama norms,fp32 input copy,as is again" 2>&1 | grep -v Warn > $OUT/exposure.txt
tail -18 $OUT/exposure.txt
