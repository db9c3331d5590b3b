# session 28: the separate script, after final/run.sh in the same start (code of the commit that adds this)
export TRITON_INTERPRET=0 PYTHONPATH=.
timeout 300 python benchmarks/experiments/independent_ratios.py --rounds 3 > $OUT/independent.txt 2>&1
tail -24 $OUT/independent.txt
