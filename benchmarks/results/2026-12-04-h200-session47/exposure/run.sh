#!/bin/bash
# Session 47, through the device tool (nvidia-h200), from the repository root: session 46's unrun A/B (steps
# alternated with the LoRA branch node's forward kernel as is and peft's ops in the node, NOTE [LoRA branch] rule 6),
# then the forward kernel's isolated device time against peft's ops with one fp32 cast (baseline corrected in d2b10e5).
export TRITON_INTERPRET=0 PYTHONPATH=.
timeout 300 python benchmarks/experiments/step_exposure.py --shapes 4x1024,1x8192 --configs intra_inter@2,intra_inter@4 \
    --steps 10 --variants "as is,peft forward,as is again" 2>&1 | grep -v Warn > $OUT/exposure.txt
tail -14 $OUT/exposure.txt
timeout 200 python benchmarks/experiments/lora_branch_tiles.py --tokens 4096,8192 --forward \
    --settings "32,128,1,4,3;32,64,1,4,3;16,128,1,4,3" 2>&1 | grep -v Warn > $OUT/forward_tiles.txt
tail -20 $OUT/forward_tiles.txt
