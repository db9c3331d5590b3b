#!/usr/bin/env bash
# Session 48 (no GPU): every Triton launch of bench_step's configurations at Llama-2-7B widths (1 layer, 1x64
# tokens, bf16, LoRA dropout 0 and 0.1), recorded on the dev CPU and compiled for sm_90 (tools/check_compile.py).
set -euo pipefail
python tools/check_compile.py --json "${OUT:-.}/rows.json" | tee "${OUT:-.}/output.txt"
