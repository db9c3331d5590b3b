#!/bin/bash
# session 17: the backward's decodes by kind now (after sessions 11-16), and plain's ops, 1x8192 and 4x1024
export TRITON_INTERPRET=0 PYTHONPATH=.
for shape in 1x8192 4x1024; do
  python tools/profile_step.py --config intra_inter@2 --layers 8 --shape $shape --cprofile 0 --by-recipe --steps 4 --top 40 --by-shape --name-width 70 > $OUT/recipes-$shape.txt 2>&1
  python tools/profile_step.py --config plain --layers 8 --shape $shape --cprofile 0 --steps 4 --top 40 --by-shape --name-width 70 > $OUT/plain-$shape.txt 2>&1
  grep -A 40 "backward decodes" $OUT/recipes-$shape.txt | head -42
  head -3 $OUT/plain-$shape.txt | grep step
done
