#!/bin/bash
# Session 9: old (6fa0179) vs new alternated in one machine start, intra_inter at 1x8192.
R=$(pwd)
for i in 1 2; do
  for v in old new; do
    if [ $v = old ]; then d=$R/.scratch/ab/old; else d=$R; fi
    (cd $d && PYTHONPATH=. python tools/bench_step.py --shapes 1x8192 --configs intra_inter --steps 10 --out $OUT/s-$v-$i > $OUT/s-$v-$i.txt 2>&1)
    python3 -c "
import json,glob
d=json.load(open(glob.glob('$OUT/s-$v-$i/*.json')[0]))
for r in d['results']:
    print('$v-$i', r['config'], 'fwd %.1f bwd %.1f step %.1f min %.1f x %.3f mem %.2f' % (r['fwd_s']*1e3, r['bwd_s']*1e3, r['step_s']*1e3, r['step_min_s']*1e3, r.get('time_ratio') or 0, r.get('mem_ratio') or 0))
"
    rm -rf $OUT/s-$v-$i
  done
done
