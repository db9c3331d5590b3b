#!/bin/bash
# Session 14, third machine start: the issue-6 table with replayed_steps for every hyclora configuration.
export TRITON_INTERPRET=0
PYTHONPATH=. python tools/bench_step.py --out /tmp/final --budget-s 300 > $OUT/final.txt 2>&1
cp /tmp/final/*.json $OUT/final.json
tail -30 $OUT/final.txt
python -c "
import json, glob
d = json.load(open(glob.glob('$OUT/final.json')[0]))
print([(r['shape'], r['config'], r.get('replayed_steps')) for r in d['results'] if r.get('replayed_steps') is not None])"
