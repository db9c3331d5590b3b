#!/bin/bash
# Session 11, device run 1: the backward's decodes by kind (profile_step --by-recipe), plain's backward for reference.
export TRITON_INTERPRET=0
for shape in 1x8192 4x1024; do
  PYTHONPATH=. python tools/profile_step.py --config intra_inter@2 --layers 8 --shape $shape --cprofile 0 --by-recipe --steps 4 --top 30 --by-shape --name-width 70 > $OUT/recipes-$shape.txt 2>&1
  PYTHONPATH=. python tools/profile_step.py --config plain --layers 8 --shape $shape --cprofile 0 --steps 4 --top 30 --by-shape --name-width 70 > $OUT/plain-$shape.txt 2>&1
  grep -A 40 "backward decodes" $OUT/recipes-$shape.txt | head -45
  head -3 $OUT/plain-$shape.txt | grep step
done
