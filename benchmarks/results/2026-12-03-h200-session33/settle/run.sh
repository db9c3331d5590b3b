#!/bin/bash
# Session 33, through the device tool (nvidia-h200), from the repository root: pending non-finite records settled at
# each admission (as shipped since the commit that adds this) against at every pack, steps alternated in one process
export TRITON_INTERPRET=0 PYTHONPATH=.
python benchmarks/experiments/step_exposure.py --shapes 4x1024 --configs intra_inter@2,intra_inter@4 --steps 25 \
    --variants "as is,settle each pack" 2>&1 | grep -v Warn > $OUT/settle_4x1024.txt
tail -8 $OUT/settle_4x1024.txt
