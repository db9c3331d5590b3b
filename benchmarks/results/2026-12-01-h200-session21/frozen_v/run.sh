#!/bin/bash
# session 21: v's frozen term too (X·W viewed as SDPA's heads, NOTE [Frozen term]) against gate's and up's alone
# (HEAD of the tracker commit, in $1): replay bit for bit and the cosine to exact autograd on the GPU, then the step
# A/B (plain and intra_inter@2 at both shapes, old and new alternated twice in one machine start)
export TRITON_INTERPRET=0
PYTHONPATH=. python tools/check_replay.py --deterministic strict --layers 8 --shape 1x1024 --steps 4 \
  --presets intra_inter@2,intra_inter@4,intra_inter_full_fuse@2 > $OUT/check_replay.txt 2>&1
echo "replay rc=$?"; grep "^{" $OUT/check_replay.txt | cut -c1-300
bash benchmarks/ab_step.sh $1 plain,intra_inter@2
