#!/bin/bash
# Session 34, through the device tool (nvidia-h200), from the repository root: a bound on what Python's cyclic GC
# costs a step (step_exposure.py's "gc off" variant, alternated step by step with the step as shipped). The run
# began with a script timing the SDPA replay beside other work on a second stream, removed afterwards as a repeat
# of session 20's benchmarks/experiments/overlap_probe.py (docs/benchmarks.md "Session 34").
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import torch,triton,transformers,peft;print(torch.__version__, triton.__version__, transformers.__version__, peft.__version__)"
python benchmarks/experiments/step_exposure.py --shapes 4x1024 --configs intra_inter@2,intra_inter@4 --steps 25 \
    --variants "as is,gc off" 2>&1 | grep -v Warn > $OUT/gc_4x1024.txt; tail -8 $OUT/gc_4x1024.txt
python benchmarks/experiments/step_exposure.py --shapes 1x8192 --configs intra_inter@2 --steps 10 \
    --variants "as is,gc off" 2>&1 | grep -v Warn > $OUT/gc_1x8192.txt; tail -6 $OUT/gc_1x8192.txt
