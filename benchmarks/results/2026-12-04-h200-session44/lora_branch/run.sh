#!/bin/bash
# Session 44, through the device tool (nvidia-h200), from the repository root: the LoRA branch's backward as a
# replayed step runs it (fp32, pass by pass) against the same products read in 16 bits (a bound), per linear shape
# of the benchmark's model at 4x1024 and 1x8192 tokens.
# (Run before the script had its prototype columns; run_fused.sh, the same command after they were added, made the
# *_fused_* files. The script since shares its timing with ab_setup.median_ms.)
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import torch,triton;print(torch.__version__, triton.__version__)"
for t in 4096 8192; do
  python benchmarks/experiments/lora_branch_backward.py --tokens $t 2>&1 | grep -v Warn | tee $OUT/lora_branch_$t.txt
done
