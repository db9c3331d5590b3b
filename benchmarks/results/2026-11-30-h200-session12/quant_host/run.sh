#!/bin/bash
export TRITON_INTERPRET=0
PYTHONPATH=. python benchmarks/results/2026-11-30-h200-session12/quant_host/qhost.py > $OUT/qhost.txt 2>&1
head -80 $OUT/qhost.txt
