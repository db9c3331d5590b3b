#!/bin/bash
# Session 46 (the second call of narrow/): steps alternated with the node's input decoded in 16 bits (as is) and in
# fp32 as before NOTE [LoRA branch] rule 5.
export TRITON_INTERPRET=0 PYTHONPATH=.
timeout 300 python benchmarks/experiments/step_exposure.py --shapes 4x1024,1x8192 --configs intra_inter@2,intra_inter@4 \
    --steps 10 --variants "as is,fp32 node input,as is again" 2>&1 | grep -v Warn > $OUT/exposure.txt
tail -14 $OUT/exposure.txt
