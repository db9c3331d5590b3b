#!/bin/bash
# Session 33, through the device tool (nvidia-h200), from the repository root: a replayed 4x1024 step's host time by
# part (intra_inter@2, baseline, plain), then a cProfile of a replayed intra_inter@2 forward at 1x64 (the GPU idle)
set -x
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import torch,triton,transformers,peft;print(torch.__version__,triton.__version__,transformers.__version__,peft.__version__)"
for c in plain baseline intra_inter@2; do
  python benchmarks/experiments/host_parts.py $c 4x1024 2>&1 | grep -v Warn | tee -a $OUT/host_parts.txt
done
python benchmarks/experiments/forward_cprofile.py intra_inter@2 2>&1 | grep -v Warn > $OUT/cprof_ii2.txt
head -c 5000 $OUT/cprof_ii2.txt
