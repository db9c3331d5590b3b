#!/bin/bash
# Session 49, through the device tool (nvidia-h200), from the repository root, after a first call that copied
# .scratch/gpuA/part1 to /tmp/hy_part1 (benchmarks/smollm2_on_device.sh): SmolLM2-135M fine-tuned 100 steps on KJV
# text, baseline against intra_inter at 2 bits with the device's kernels (the LoRA branch and norm nodes, sessions
# 44-47): session 6's A/B (docs/benchmarks.md "Session 6") again, the nodes' fidelity end to end on real text.
set -e
bash benchmarks/smollm2_on_device.sh assemble
export TRITON_INTERPRET=0 PYTHONPATH=/tmp/hy_m:.
timeout 420 python -m hyclora_hooks ab --device cuda --policy baseline --policy intra_inter --bits 2 --steps 100 \
    --batch-size 4 --seq-len 256 --eval-every 50 --no-progress --json $OUT/ab-smollm2-100steps-2bit.json \
    --plot $OUT/ab-smollm2-100steps-2bit.png 2>&1 | grep -v Warn > $OUT/ab.txt || true
tail -25 $OUT/ab.txt
