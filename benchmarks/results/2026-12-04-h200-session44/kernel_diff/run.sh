#!/bin/bash
# Session 44, through the device tool (nvidia-h200), from the repository root: which kernels intra_inter@2/@4 add to
# plain's 4x1024 step, by name and phase (where the backward's GPU time beyond plain's goes now, after sessions 40-42).
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import torch,triton,transformers,peft;print(torch.__version__, triton.__version__, transformers.__version__, peft.__version__)"
python benchmarks/experiments/kernel_diff.py --shapes 4x1024 --configs intra_inter@2,intra_inter@4 --top 60 > $OUT/kernel_diff.txt 2>&1 \
  || python benchmarks/experiments/kernel_diff.py --shapes 4x1024 --configs intra_inter@2,intra_inter@4 > $OUT/kernel_diff.txt 2>&1
grep -v Warn $OUT/kernel_diff.txt | head -150
