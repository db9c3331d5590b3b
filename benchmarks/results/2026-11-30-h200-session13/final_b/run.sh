#!/bin/bash
# Session 13, second start: the issue-6 table again (every configuration, both shapes, replay on).
export TRITON_INTERPRET=0
PYTHONPATH=. python tools/bench_step.py --out /tmp/final --budget-s 300 > $OUT/final.txt 2>&1
cp /tmp/final/*.json $OUT/final.json
tail -29 $OUT/final.txt
