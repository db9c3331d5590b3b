#!/bin/bash
# session 19: does ATen take bf16 logits to fp32 log-probs in one call? (run from the repository root)
python benchmarks/results/2026-12-01-h200-session19/log_softmax/check.py > $OUT/output.txt 2>&1
