#!/usr/bin/env bash
# session 22: the minimum LoRA-gradient cosine against exact autograd of the old tree ($1, f507b1f: q/k store
# t - part) and this one (q/k store X·W before RoPE) at 1x1024, intra_inter@2 and @4, one machine start; then the
# RoPE part kernel's table printed wide (its rebuild mode against the add it replaces)
set -u
export TRITON_INTERPRET=0 COLUMNS=400
for tree in $1 .; do
  name=$([ $tree = . ] && echo new || echo old)
  (cd $tree && PYTHONPATH=. python tools/check_replay.py --deterministic strict --layers 8 --shape 1x1024 --steps 4 \
    --presets intra_inter@2,intra_inter@4) > $OUT/cos-$name.txt 2>&1; echo "$name rc=$?"; grep "^{" $OUT/cos-$name.txt | cut -c1-330
done
PYTHONPATH=. python tools/check_rope_part.py > $OUT/check_rope_part.txt 2>&1; echo "rope rc=$?"; tail -8 $OUT/check_rope_part.txt
