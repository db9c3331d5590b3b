#!/bin/bash
# Session 33, through the device tool (nvidia-h200), from the repository root: what a replayed intra_inter@2 step
# spends beyond its GPU work, by taking away one suspect at a time (benchmarks/experiments/step_exposure.py)
set -x
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import torch,triton,transformers,peft;print(torch.__version__,triton.__version__,transformers.__version__,peft.__version__)"
python benchmarks/experiments/step_exposure.py --shapes 1x8192,4x1024 --configs intra_inter@2 --steps 15 2>&1 \
    | grep -v Warn > $OUT/step_exposure.txt
tail -16 $OUT/step_exposure.txt
