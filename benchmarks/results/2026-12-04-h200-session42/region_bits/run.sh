#!/bin/bash
# Session 42, through the device tool (nvidia-h200), code of the commit that adds this: checkpointed steps' LoRA
# gradients with the fused sums in checkpointed layers against without (tools/check_region_sums.py), on the GPU's
# kernels: deterministic attention, then with LoRA dropout, then as the benchmark runs (no deterministic flag), 8 layers.
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 120 python tools/check_region_sums.py --layers 2 --shape 1x1024 --deterministic strict 2>&1 | grep -v Warn > $OUT/strict.txt
tail -8 $OUT/strict.txt
timeout 120 python tools/check_region_sums.py --layers 2 --shape 1x1024 --deterministic strict --lora-dropout 0.1 2>&1 | grep -v Warn > $OUT/dropout.txt
tail -8 $OUT/dropout.txt
timeout 150 python tools/check_region_sums.py --layers 8 --shape 4x1024 2>&1 | grep -v Warn > $OUT/as_benchmarked.txt
tail -8 $OUT/as_benchmarked.txt
