#!/bin/bash
# Session 30, through the device tool (nvidia-h200, one machine start), from the repository root: the dropout's
# passes fused into the RMSNorm tail and the widening cast; then bench_step with and without LoRA dropout
export TRITON_INTERPRET=0 PYTHONPATH=.
python benchmarks/experiments/bitmask_speed.py > $OUT/bitmask_speed.txt 2>&1
python benchmarks/experiments/dropout_masks.py > $OUT/dropout_masks.txt 2>&1
for p in 0.05 0; do
  python tools/bench_step.py --out $OUT --shapes 4x1024 --configs intra_inter@2 --gpu-work-steps 2 \
      --lora-dropout $p 2>&1 | grep -v Warn > $OUT/bench_dropout_$p.txt
done
python benchmarks/experiments/kernel_diff.py --shapes 4x1024 --configs intra_inter@2 --lora-dropout 0.05 --top 20 \
    > $OUT/kernel_diff_dropout.txt 2>&1
