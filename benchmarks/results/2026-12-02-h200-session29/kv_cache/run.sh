# session 29: HF's KV cache asked for by the call (before session 29, every step of a default-config model) against
# the context's default (off), one process, steps alternated
export TRITON_INTERPRET=0 PYTHONPATH=.
python benchmarks/experiments/kv_cache_ab.py --shapes 4x1024,1x8192 --steps 10 2>&1 | grep -v Warn > $OUT/kv_cache_ab.txt
tail -8 $OUT/kv_cache_ab.txt
