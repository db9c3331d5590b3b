# session 27: the separate script, its own machine start after final/run.sh's (code of the commit that adds this)
export TRITON_INTERPRET=0 PYTHONPATH=.
timeout 300 python benchmarks/experiments/independent_ratios.py --rounds 3 > $OUT/independent.txt 2>&1
tail -24 $OUT/independent.txt
