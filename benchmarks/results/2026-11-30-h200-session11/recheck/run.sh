#!/bin/bash
# Session 11, device run 6: after 62ba601 (fallback = op-by-op replay, hand-written fusable): the kernel check, the
# decodes by kind at 1x8192 (q/k rebuilds must stay ~1 ms a step), a few model families.
export TRITON_INTERPRET=0
PYTHONPATH=. python tools/check_rope_part.py > $OUT/rope.txt 2>&1
tail -7 $OUT/rope.txt
PYTHONPATH=. python tools/profile_step.py --config intra_inter@2 --layers 8 --shape 1x8192 --cprofile 0 --by-recipe --steps 4 --top 5 > $OUT/recipes-1x8192.txt 2>&1
grep -B1 -A 10 "backward decodes" $OUT/recipes-1x8192.txt | cut -c1-110
PYTHONPATH=. python tools/check_model_families.py --models llama,qwen2,mistral,gemma --bits 8,2 > $OUT/families.txt 2>&1
tail -3 $OUT/families.txt
