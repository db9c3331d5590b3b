#!/bin/bash
# Session 47 (session 46's script, rerun), through the device tool (nvidia-h200), from the repository root, code of the commit that adds this:
# the issue-6 table with the LoRA branch node's forward in one kernel (rule 6), its input read in 16 bits (rule 5)
# and each backward pass on its own tiles; GPU work profiled last; then the separate script.
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import torch,triton,transformers,peft;print(torch.__version__, triton.__version__, transformers.__version__, peft.__version__)"
timeout 330 python tools/bench_step.py --out $OUT --budget-s 250 --gpu-work-steps 2 2>&1 | grep -v Warn > $OUT/bench.txt
tail -34 $OUT/bench.txt
timeout 170 python benchmarks/experiments/independent_ratios.py --rounds 3 2>&1 | grep -v Warn > $OUT/independent.txt
tail -20 $OUT/independent.txt
