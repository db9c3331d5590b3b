#!/bin/bash
# Session 11, device run 9: casts into outputs checked on the GPU; old (39b2c22) vs new backward alternated;
# decodes by kind at 1x8192.
export TRITON_INTERPRET=0
R=$(pwd)
PYTHONPATH=. python tools/check_cast_into.py > $OUT/cast.txt 2>&1
tail -14 $OUT/cast.txt
for i in 1; do
  for v in old new; do
    if [ $v = old ]; then d=$R/.scratch/ab/old; else d=$R; fi
    (cd $d && PYTHONPATH=. python tools/bench_step.py --shapes 4x1024,1x8192 --configs intra_inter@2 --steps 8 --gpu-work-steps 2 --out /tmp/ab-$v-$i > /tmp/ab-$v-$i.txt 2>&1)
    python3 -c "
import json,glob
d=json.load(open(glob.glob('/tmp/ab-$v-$i/*.json')[0]))
for r in d['results']:
    print('$v-$i', r['shape'], r['config'], 'fwd %.1f bwd %.1f step %.1f x %.3f gpu %.1f gpu x %.3f mem %.2f' % (r['fwd_s']*1e3, r['bwd_s']*1e3, r['step_s']*1e3, r.get('time_ratio') or 0, (r.get('gpu_work_s') or 0)*1e3, r.get('gpu_work_ratio') or 0, r.get('mem_ratio') or 0))
" | tee -a $OUT/ab.txt
  done
done
PYTHONPATH=. python tools/profile_step.py --config intra_inter@2 --layers 8 --shape 1x8192 --cprofile 0 --by-recipe --steps 4 --top 5 > $OUT/recipes-1x8192.txt 2>&1
grep -A 8 "backward decodes" $OUT/recipes-1x8192.txt | cut -c1-110
