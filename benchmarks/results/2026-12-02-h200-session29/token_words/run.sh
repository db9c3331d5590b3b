# session 29: 4-bit token groups on int32 words against the library's tile kernel (bits and GPU time)
export TRITON_INTERPRET=0
cd benchmarks/experiments && PYTHONPATH=../.. python quant_token_words.py 2>&1 | grep -v Warn > $OUT/token_words.txt
tail -60 $OUT/token_words.txt
