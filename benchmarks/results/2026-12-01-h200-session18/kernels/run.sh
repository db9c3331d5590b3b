#!/bin/bash
# session 18: the kernels of each kind of backward decode, Triton's included (charged to the decode range), both shapes
export TRITON_INTERPRET=0 PYTHONPATH=.
for shape in 1x8192 4x1024; do
python tools/profile_step.py --config intra_inter@2 --layers 8 --shape $shape --cprofile 0 --by-recipe --steps 3 \
  --top 60 --by-shape --recipe-kernels 8 --name-width 160 > $OUT/recipe-kernels-$shape.txt 2>&1
done
grep -A 200 "by backward decode kind" $OUT/recipe-kernels-1x8192.txt | grep -B200 -m1 "^top " | cut -c1-150 | head -120
