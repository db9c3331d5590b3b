#!/bin/bash
# A/B of session 9's LoRA-part change: old (HEAD before) vs new, alternated in one machine start.
R=$(pwd)
for i in 1 2; do
  for v in old new; do
    if [ $v = old ]; then d=$R/.scratch/ab/old; else d=$R; fi
    (cd $d && PYTHONPATH=. python tools/bench_step.py --shapes 4x1024 --configs intra_inter --steps 10 --out $OUT/step-$v-$i > $OUT/step-$v-$i.txt 2>&1)
    grep -E "plain|intra_inter" $OUT/step-$v-$i.txt | tail -3
  done
done
for v in old new; do
  if [ $v = old ]; then d=$R/.scratch/ab/old; else d=$R; fi
  (cd $d && PYTHONPATH=. python tools/profile_step.py --config intra_inter@2 --layers 8 --shape 4x1024 --cprofile 0 --steps 3 --top 40 > $OUT/prof-$v.txt 2>&1)
  echo "$v $(grep -E 'step .* ms' $OUT/prof-$v.txt) $(grep 'Self CUDA time total' $OUT/prof-$v.txt)"
done
