#!/bin/bash
# Session 36, through the device tool (nvidia-h200), from the repository root, in the machine start of walk/ (a fast
# one), code of 18e5fc3 (NOTE [Unchecked walk]): bench_step for baseline, intra_inter and intra_inter+checkpoint
# (device time left did not allow every configuration), then the separate script.
mkdir -p $OUT && export TRITON_INTERPRET=0 PYTHONPATH=.
python tools/bench_step.py --out $OUT --budget-s 150 --gpu-work-steps 2 --configs baseline,intra_inter,intra_inter+checkpoint 2>&1 | grep -v Warn > $OUT/bench.txt
tail -16 $OUT/bench.txt
timeout 190 python benchmarks/experiments/independent_ratios.py --rounds 3 > $OUT/independent.txt 2>&1
tail -24 $OUT/independent.txt
