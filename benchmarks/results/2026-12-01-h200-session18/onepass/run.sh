#!/bin/bash
# session 18: token-group quantize in one read against the library's two-walk kernel (onepass.txt: first run;
# onepass2.txt: the second, with the library kernel at narrower tiles)
export TRITON_INTERPRET=0
cd benchmarks/experiments && PYTHONPATH=../.. python quant_tokens_onepass.py > $OUT/onepass2.txt 2>&1; tail -45 $OUT/onepass2.txt
