#!/bin/bash
# Session 34, through the device tool (nvidia-h200), from the repository root: the collector held off from a
# context's entry until its step's entries are gone (NOTE [GC pause], hyclora_hooks/gcpause.py; with NOTE
# [Lifetimes] rule 15) against the step without it, alternated step by step; then bench_step for memory, the
# accountant and the step table of baseline and intra_inter with the pause.
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python benchmarks/experiments/step_exposure.py --shapes 4x1024 --configs intra_inter@2,intra_inter@4 --steps 30 \
    --variants "as is,no gc pause" 2>&1 | grep -v Warn > $OUT/pause_4x1024.txt; tail -8 $OUT/pause_4x1024.txt
python benchmarks/experiments/step_exposure.py --shapes 1x8192 --configs intra_inter@2 --steps 10 \
    --variants "as is,no gc pause" 2>&1 | grep -v Warn > $OUT/pause_1x8192.txt; tail -5 $OUT/pause_1x8192.txt
python tools/bench_step.py --out $OUT --budget-s 200 --gpu-work-steps 2 --configs baseline,intra_inter \
    2>&1 | grep -v Warn > $OUT/bench.txt
tail -12 $OUT/bench.txt
