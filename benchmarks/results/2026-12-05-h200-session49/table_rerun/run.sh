#!/bin/bash
# Session 49, the table again on a later machine start (table_rerun/; the first: ../table/), through the device tool (nvidia-h200), from
# the repository root: the issue-6 table with the LoRA branch node's forward in one kernel (rule 6), its input read in
# 16 bits (rule 5) and saved in 16 bits (rule 7), each backward pass on its own tiles; GPU work profiled last. The
# separate script is run_independent.sh, a call of its own (a machine taken back loses one call's work).
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import torch,triton,transformers,peft;print(torch.__version__, triton.__version__, transformers.__version__, peft.__version__)"
timeout 330 python tools/bench_step.py --out $OUT --budget-s 250 --gpu-work-steps 2 2>&1 | grep -v Warn > $OUT/bench.txt
tail -34 $OUT/bench.txt
