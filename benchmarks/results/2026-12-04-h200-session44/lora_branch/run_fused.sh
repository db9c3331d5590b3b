#!/bin/bash
# Session 44, second call (nvidia-h200), from the repository root: run.sh's table with the script's prototype of a
# fused backward added (two Triton passes, fp32 accumulation, tl.dot at ieee and tf32x3 input precision), checked
# against the fp32 path on the same data.
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import torch,triton;print(torch.__version__, triton.__version__)"
for t in 4096 8192; do
  python benchmarks/experiments/lora_branch_backward.py --tokens $t 2>&1 | grep -v Warn | tee $OUT/lora_branch_fused_$t.txt
done
