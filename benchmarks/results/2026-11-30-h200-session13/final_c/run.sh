#!/bin/bash
# Session 13, after the GC-object cuts: the issue-6 table, then per-step forward host time against gc collections.
export TRITON_INTERPRET=0
PYTHONPATH=. python tools/bench_step.py --out /tmp/final --budget-s 300 > $OUT/final.txt 2>&1
cp /tmp/final/*.json $OUT/final.json
tail -29 $OUT/final.txt | head -14
python benchmarks/results/2026-11-30-h200-session13/gc_steps/gcmodes.py > $OUT/gcmodes.txt 2>&1
grep round $OUT/gcmodes.txt | cut -c1-120
