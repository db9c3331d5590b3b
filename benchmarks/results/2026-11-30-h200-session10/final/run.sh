PYTHONPATH=. python tools/bench_step.py --steps 10 --budget-s 420 --out /tmp/final > $OUT/final.txt 2>&1; cp /tmp/final/*.json $OUT/final.json
