#!/bin/bash
# session 20: do codec kernels on a side stream hide behind the step's GEMMs and attention? (H200)
export TRITON_INTERPRET=0 PYTHONPATH=.
python -u benchmarks/experiments/overlap_probe.py > $OUT/overlap.txt 2>&1; echo "rc=$?"; grep -v "^{" $OUT/overlap.txt | tail -20
