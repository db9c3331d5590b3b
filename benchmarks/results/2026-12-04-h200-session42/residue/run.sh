#!/bin/bash
# Session 42, through the device tool (nvidia-h200), code of the commit that adds this: do checkpointed steps slow
# the uncheckpointed steps after them? region_residue.py with region sums on, then off, then on again.
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
for v in on off on_again; do
  flag=""; [ $v = off ] && flag=--no-region-sums
  timeout 150 python benchmarks/experiments/region_residue.py --shapes 4x1024 --steps 10 $flag 2>&1 | grep -v Warn > $OUT/$v.txt
  tail -9 $OUT/$v.txt
done
