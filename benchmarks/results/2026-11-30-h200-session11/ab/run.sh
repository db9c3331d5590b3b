#!/bin/bash
# Session 11, device run 2: the RoPE part kernel checked and timed; old (09a55df) vs new alternated; decodes by kind.
export TRITON_INTERPRET=0
R=$(pwd)
PYTHONPATH=. python tools/check_rope_part.py > $OUT/rope.txt 2>&1
tail -12 $OUT/rope.txt
for i in 1 2; do
  for v in old new; do
    if [ $v = old ]; then d=$R/.scratch/ab/old; else d=$R; fi
    (cd $d && PYTHONPATH=. python tools/bench_step.py --shapes 4x1024,1x8192 --configs intra_inter@2,intra_inter@4 --steps 8 --out /tmp/ab-$v-$i > /tmp/ab-$v-$i.txt 2>&1)
    python3 -c "
import json,glob
d=json.load(open(glob.glob('/tmp/ab-$v-$i/*.json')[0]))
for r in d['results']:
    print('$v-$i', r['shape'], r['config'], 'fwd %.1f bwd %.1f step %.1f min %.1f x %.3f mem %.2f' % (r['fwd_s']*1e3, r['bwd_s']*1e3, r['step_s']*1e3, r['step_min_s']*1e3, r.get('time_ratio') or 0, r.get('mem_ratio') or 0))
" | tee -a $OUT/ab.txt
  done
done
PYTHONPATH=. python tools/profile_step.py --config intra_inter@2 --layers 8 --shape 1x8192 --cprofile 0 --by-recipe --steps 4 --top 20 > $OUT/recipes-1x8192.txt 2>&1
grep -A 12 "backward decodes" $OUT/recipes-1x8192.txt
