#!/bin/bash
# Session 43, through the device tool (nvidia-h200), from the repository root, code of the commit that adds this:
# the table for plain, checkpointing, intra_inter and intra_inter+checkpoint only (the step targets' rows; GPU work
# profiled last), then the separate script, on the start of profiler_residue_again/ (the fourth of the session).
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 220 python tools/bench_step.py --configs plain,checkpoint,intra_inter,intra_inter+checkpoint --out $OUT \
    --gpu-work-steps 2 2>&1 | grep -v Warn > $OUT/bench.txt
tail -16 $OUT/bench.txt
timeout 170 python benchmarks/experiments/independent_ratios.py --rounds 3 2>&1 | grep -v Warn > $OUT/independent.txt
tail -20 $OUT/independent.txt
