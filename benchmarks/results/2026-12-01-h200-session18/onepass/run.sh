#!/bin/bash
# session 18: token-group quantize in one read against the library's two-walk kernel
export TRITON_INTERPRET=0
cd benchmarks/experiments && PYTHONPATH=../.. python quant_tokens_onepass.py > $OUT/onepass.txt 2>&1; tail -40 $OUT/onepass.txt
