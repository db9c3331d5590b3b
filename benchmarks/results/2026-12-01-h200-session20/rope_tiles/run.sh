#!/bin/bash
# session 20: the RoPE part kernel (kernels/rope_part.py) with programs walking 1-4 heads (_HEADS) and, from the
# second call on, each rotate_half half formed by its own dot (two HALF-wide dots instead of two D-wide): checked
# on the GPU at the library default, then every tile / warps / heads variant timed in subtract mode against a copy.
# First call (heads walk only, commit of "rope_part: programs may walk several heads"): rope_part_tiles-walk.txt.
export TRITON_INTERPRET=0 PYTHONPATH=.
python tools/check_rope_part.py > $OUT/check_rope_part.txt 2>&1; echo "check rc=$?"; tail -8 $OUT/check_rope_part.txt
python -u benchmarks/experiments/rope_part_tiles.py > $OUT/rope_part_tiles.txt 2>&1; echo "tiles rc=$?"
grep -v "^$" $OUT/rope_part_tiles.txt | grep -v "^[14] " | head -60
