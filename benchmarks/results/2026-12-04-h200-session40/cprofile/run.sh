#!/bin/bash
# Session 40, through the device tool (nvidia-h200), from the repository root: cProfile of 10 replayed forwards of
# the benchmark's model at 4x1024 (the GPU busy: the host path the step sees), own time and ours inclusive.
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import torch,triton,transformers,peft;print(torch.__version__, triton.__version__, transformers.__version__, peft.__version__)"
for c in intra_inter@2 plain; do
  n=${c/@/-}
  timeout 200 python benchmarks/experiments/forward_cprofile.py $c --shape 4x1024 2>&1 | grep -v Warn > $OUT/cprof_$n.txt
  head -60 $OUT/cprof_$n.txt
done
