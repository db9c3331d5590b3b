#!/bin/bash
# Session 41, through the device tool (nvidia-h200), from the repository root, code of the commit that adds this:
# step A/Bs (alternated steps) of queued releases against eager ones and against "session 40" (view recipes,
# Function.apply's wrapper and eager releases back), at both shapes, and the forward's host phases.
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 200 python benchmarks/experiments/step_exposure.py --shapes 4x1024 --configs intra_inter@2,intra_inter@4 \
    --variants "as is,session 40,eager releases,as is again" --steps 20 2>&1 | grep -v Warn > $OUT/exposure_4x1024.txt
tail -12 $OUT/exposure_4x1024.txt
timeout 150 python benchmarks/experiments/step_exposure.py --shapes 1x8192 --configs intra_inter@2 \
    --variants "as is,session 40,as is again" --steps 12 2>&1 | grep -v Warn > $OUT/exposure_1x8192.txt
tail -6 $OUT/exposure_1x8192.txt
timeout 90 python benchmarks/experiments/forward_phases.py plain,intra_inter@2 2>&1 | grep -v Warn > $OUT/phases.txt
tail -3 $OUT/phases.txt
