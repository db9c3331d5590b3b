#!/bin/bash
# session 20: the widening kernel (kernels/widen.py): bits and time against ATen with a block sweep; the recipes'
# casts into outputs checked again (tools/check_cast_into.py: same bits, a tiny Llama bit for bit), and one
# profiled 1x8192 step's backward decodes by kind (against prof/ of this session, before the kernel)
export TRITON_INTERPRET=0 PYTHONPATH=.
python -u benchmarks/experiments/widen_tiles.py > $OUT/widen_tiles.txt 2>&1; echo "tiles rc=$?"; grep -v "^{" $OUT/widen_tiles.txt | tail -12
python tools/check_cast_into.py > $OUT/check_cast_into.txt 2>&1; echo "cast_into rc=$?"; tail -14 $OUT/check_cast_into.txt
python tools/profile_step.py --config intra_inter@2 --layers 8 --shape 1x8192 --cprofile 0 --by-recipe --steps 3 \
  --top 90 --name-width 110 > $OUT/ii2-1x8192.txt 2>&1; echo "prof rc=$?"
grep -A 12 "by backward decode kind" $OUT/ii2-1x8192.txt
