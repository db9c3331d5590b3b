#!/bin/bash
# session 18: session 17's shared rounding helper (1f01f5a) checked on the GPU ("same bits" columns), then the
# backward's decodes by kind with the kernels each launches (profile_step --recipe-kernels), 1x8192
export TRITON_INTERPRET=0 PYTHONPATH=.
python tools/check_rope_part.py > $OUT/check_rope_part.txt 2>&1; echo "rope rc=$?"; tail -15 $OUT/check_rope_part.txt
python tools/check_lora_part.py > $OUT/check_lora_part.txt 2>&1; echo "lora rc=$?"; tail -15 $OUT/check_lora_part.txt
python tools/profile_step.py --config intra_inter@2 --layers 8 --shape 1x8192 --cprofile 0 --by-recipe --steps 3 \
  --top 30 --recipe-kernels 6 --name-width 90 > $OUT/recipe-kernels-1x8192.txt 2>&1
grep -A 200 "by backward decode kind" $OUT/recipe-kernels-1x8192.txt | grep -B200 -m1 "^top " | head -150
