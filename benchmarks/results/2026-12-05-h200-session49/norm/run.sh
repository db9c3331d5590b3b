#!/bin/bash
# Session 49 (copied from session 47, unrun there), through the device tool (nvidia-h200), from the repository root: a
# Llama RMSNorm's cost by Hugging Face's ops against kernels/rms_norm.py's one pass each way (checked against them),
# at the benchmark's widths: the size of a norm node's lever before one is built.
export TRITON_INTERPRET=0 PYTHONPATH=.
timeout 200 python benchmarks/experiments/rms_norm_cost.py --tokens 4096,8192 2>&1 | grep -v Warn > $OUT/norm_cost.txt
tail -12 $OUT/norm_cost.txt
