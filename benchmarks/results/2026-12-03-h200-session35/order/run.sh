#!/bin/bash
# Session 35, through the device tool (nvidia-h200), from the repository root: fine/'s A/B of the unit packs' short
# way put "as is" (the short way) right after plain's step; here its place in the alternation is checked: the
# short way twice (once after plain, once after the long way) and the long way between them.
export TRITON_INTERPRET=0 PYTHONPATH=.
python benchmarks/experiments/step_exposure.py --shapes 4x1024 --configs intra_inter@2,intra_inter@4 --steps 25 \
  --variants "as is,long-way unit packs,as is again" 2>&1 | grep -v Warn | tail -11 | tee $OUT/order.txt
