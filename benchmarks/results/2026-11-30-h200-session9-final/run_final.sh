#!/bin/bash
# Session 9: old (6fa0179) vs new alternated for the checkpointing configurations, then the full benchmark (new).
R=$(pwd)
for i in 1 2; do
  for v in old new; do
    if [ $v = old ]; then d=$R/.scratch/ab/old; else d=$R; fi
    (cd $d && PYTHONPATH=. python tools/bench_step.py --shapes 4x1024 --configs checkpoint,intra_inter+checkpoint --steps 10 --out $OUT/ck-$v-$i > $OUT/ck-$v-$i.txt 2>&1)
    python3 -c "
import json,glob
d=json.load(open(glob.glob('$OUT/ck-$v-$i/*.json')[0]))
for r in d['results']:
    print('$v-$i', r['config'], 'fwd %.1f bwd %.1f step %.1f min %.1f x %.3f' % (r['fwd_s']*1e3, r['bwd_s']*1e3, r['step_s']*1e3, r['step_min_s']*1e3, r.get('time_ratio') or 0))
"
  done
done
PYTHONPATH=. python tools/bench_step.py --steps 10 --budget-s 330 --out $OUT/final > $OUT/final.txt 2>&1
tail -34 $OUT/final.txt
