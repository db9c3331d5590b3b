#!/bin/bash
# session 20: one 1x8192 step of intra_inter@2 and of plain, kernels by device time (top 90 / 60 rows), with the
# backward's decodes by kind and their kernels; code of the commit that adds this file (session 20's final code)
export TRITON_INTERPRET=0 PYTHONPATH=.
python tools/profile_step.py --config intra_inter@2 --layers 8 --shape 1x8192 --cprofile 0 --by-recipe --steps 3 \
  --top 90 --recipe-kernels 8 --name-width 110 > $OUT/ii2-1x8192.txt 2>&1; echo "ii2 rc=$?"
python tools/profile_step.py --config plain --layers 8 --shape 1x8192 --cprofile 0 --steps 3 \
  --top 60 --name-width 110 > $OUT/plain-1x8192.txt 2>&1; echo "plain rc=$?"
grep -A 40 "by backward decode kind" $OUT/ii2-1x8192.txt | head -30
