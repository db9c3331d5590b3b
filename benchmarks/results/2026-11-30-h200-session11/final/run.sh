#!/bin/bash
# Session 11, device run 4: the final table (every configuration, both shapes), then GPU work a step.
export TRITON_INTERPRET=0
PYTHONPATH=. python tools/bench_step.py --out /tmp/final --budget-s 330 > $OUT/final.txt 2>&1
cp /tmp/final/*.json $OUT/final.json
tail -32 $OUT/final.txt
PYTHONPATH=. python tools/bench_step.py --configs intra_inter@2,intra_inter@4,intra_inter+checkpoint@2 --steps 6 --gpu-work-steps 2 --out /tmp/gw > $OUT/gpuwork.txt 2>&1
cp /tmp/gw/*.json $OUT/gpuwork.json
python3 -c "
import json,glob
d=json.load(open(glob.glob('/tmp/gw/*.json')[0]))
for r in d['results']:
    print(r['shape'], r['config'], 'step %.1f x %.3f gpu %.1f gpu x %s' % (r['step_s']*1e3, r.get('time_ratio') or 0, (r.get('gpu_work_s') or 0)*1e3, r.get('gpu_work_ratio')))
" | tee $OUT/gpuwork-summary.txt
