#!/bin/bash
# Session 46: the LoRA branch's backward passes by what they compute, bytes and rate (device time through CUDA
# graphs), with tl.dot's tf32x3 (the module's), then tf32 and ieee (not the same accuracy: how much the precision
# costs).
set -x
export TRITON_INTERPRET=0 PYTHONPATH=.
for prec in "" tf32 ieee; do
  echo "prec: ${prec:-module}"
  python benchmarks/experiments/lora_branch_tiles.py --tokens 4096,8192 --breakdown --prec "$prec"
done 2>&1 | tee $OUT/breakdown.txt
