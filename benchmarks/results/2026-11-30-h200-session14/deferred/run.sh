#!/bin/bash
# Session 14, last device run: after deferred counting (NOTE [Deferred counting]) and the faster walk.
export TRITON_INTERPRET=0
PYTHONPATH=. python tools/bench_step.py --configs baseline,intra_inter,intra_inter+checkpoint --out /tmp/d > $OUT/bench.txt 2>&1
cp /tmp/d/*.json $OUT/bench.json
tail -14 $OUT/bench.txt
