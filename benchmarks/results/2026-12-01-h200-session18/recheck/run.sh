#!/bin/bash
# session 18: the token-group kernels after their shared helpers and the select only with outliers (_token_block, _token_params): bits on the device
# (bench_quant, 4 bits / 128 tokens and 8 bits / 64) and the one-read kernel against the walk again
export TRITON_INTERPRET=0 PYTHONPATH=.
python tools/bench_quant.py --sizes-mib 64 --bits 4 --group-size 128 > $OUT/bench_quant-4-128-b.txt 2>&1
python tools/bench_quant.py --sizes-mib 64 --bits 8 --group-size 64 > $OUT/bench_quant-8-64-b.txt 2>&1
grep -h "correctness\|token_group" $OUT/bench_quant-*-b.txt
(cd benchmarks/experiments && PYTHONPATH=../.. python quant_tokens_onepass.py > $OUT/onepass4.txt 2>&1)
grep -v Warn $OUT/onepass4.txt | grep -v warn_once | head -40
