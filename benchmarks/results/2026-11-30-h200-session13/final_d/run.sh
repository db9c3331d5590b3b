#!/bin/bash
# Session 13, last table: every session-13 change in (bound templates, GC-object cuts, cached tree walk).
export TRITON_INTERPRET=0
PYTHONPATH=. python tools/bench_step.py --out /tmp/final --budget-s 170 > $OUT/final.txt 2>&1
cp /tmp/final/*.json $OUT/final.json
tail -29 $OUT/final.txt | head -27
