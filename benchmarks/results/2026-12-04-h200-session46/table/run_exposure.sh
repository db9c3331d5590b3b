#!/bin/bash
# Session 46 (not run: the device time ran out): steps alternated with the LoRA branch node's forward kernel (as is)
# and peft's ops in the node (NOTE [LoRA branch] rule 6's A/B), 4x1024 and 1x8192. For the next session to run first
# with table/run.sh, from a folder of its own.
export TRITON_INTERPRET=0 PYTHONPATH=.
timeout 300 python benchmarks/experiments/step_exposure.py --shapes 4x1024,1x8192 --configs intra_inter@2,intra_inter@4 \
    --steps 10 --variants "as is,peft forward,as is again" 2>&1 | grep -v Warn > $OUT/exposure.txt
tail -14 $OUT/exposure.txt
