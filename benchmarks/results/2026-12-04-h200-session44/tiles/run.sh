#!/bin/bash
# Session 44, through the device tool (nvidia-h200), from the repository root: the LoRA branch kernels' tiles swept
# at the benchmark's shapes against autograd's fp32 products in the same run.
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 280 python benchmarks/experiments/lora_branch_tiles.py --tokens 4096,8192 2>&1 | grep -v Warn | tee $OUT/tiles.txt
