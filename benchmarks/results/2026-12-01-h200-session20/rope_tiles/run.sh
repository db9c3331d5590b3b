#!/bin/bash
# session 20: the RoPE part kernel with programs walking 1-8 heads (kernels/rope_part.py _HEADS), checked on the GPU
# at the library default, then every tile / warps / heads variant timed in subtract mode against a copy
export TRITON_INTERPRET=0 PYTHONPATH=.
python tools/check_rope_part.py > $OUT/check_rope_part.txt 2>&1; echo "check rc=$?"; tail -12 $OUT/check_rope_part.txt
python benchmarks/experiments/rope_part_tiles.py > $OUT/rope_part_tiles.txt 2>&1; echo "tiles rc=$?"
cat $OUT/rope_part_tiles.txt | grep -v "^$" | head -90
