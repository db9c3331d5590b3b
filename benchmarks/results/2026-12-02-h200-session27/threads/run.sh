#!/bin/bash
# Session 27, through the device tool (nvidia-h200, a fresh start), from the repository root
export TRITON_INTERPRET=0 PYTHONPATH=.
python benchmarks/experiments/host_threads.py intra_inter@2 4x1024 > $OUT/host_threads_ii2.txt
python benchmarks/experiments/host_threads.py plain 4x1024 > $OUT/host_threads_plain.txt
