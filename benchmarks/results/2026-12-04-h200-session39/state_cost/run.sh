#!/bin/bash
# Session 39, through the device tool (nvidia-h200), from the repository root: what a replayed unit's entry check
# (NOTE [Replay units] rule 1) costs a step, its cold reads and what it warms for the body included: the check
# against states taken from their first computation (step_exposure.py's experiment-only `unchecked states`),
# alternated step by step at 4x1024, twice.
export TRITON_INTERPRET=0 PYTHONPATH=.
for i in 1 2; do
  timeout 280 python benchmarks/experiments/step_exposure.py --shapes 4x1024 --configs intra_inter@2,intra_inter@4 \
    --steps 20 --variants "as is,unchecked states,as is again" 2>&1 | grep -v Warn > $OUT/exposure_$i.txt
  tail -9 $OUT/exposure_$i.txt
done
