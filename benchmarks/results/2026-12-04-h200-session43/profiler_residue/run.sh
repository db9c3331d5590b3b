#!/bin/bash
# Session 43, through the device tool (nvidia-h200), from the repository root, code of the commit that adds this:
# does a profiler session slow the host's work in later steps? Kineto's default, then TEARDOWN_CUPTI=1, each in
# its own process, one machine start.
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import torch,triton,transformers,peft;print(torch.__version__, triton.__version__, transformers.__version__, peft.__version__)"
env | grep -i cupti || echo "no CUPTI variable set"
timeout 200 python benchmarks/experiments/profiler_residue.py 2>&1 | grep -v Warn > $OUT/default.txt
tail -9 $OUT/default.txt
TEARDOWN_CUPTI=1 timeout 200 python benchmarks/experiments/profiler_residue.py 2>&1 | grep -v Warn > $OUT/teardown.txt
tail -9 $OUT/teardown.txt
