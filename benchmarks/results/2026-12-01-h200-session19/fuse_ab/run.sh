#!/bin/bash
# session 19: intra_inter against intra_inter_full_fuse, interleaved in one process, twice in one machine start
# (commit a2f5057)
export TRITON_INTERPRET=0 PYTHONPATH=.
for i in 1 2; do
python tools/bench_step.py --configs plain,intra_inter@2,intra_inter_full_fuse@2,intra_inter@4,intra_inter_full_fuse@4 \
  --steps 6 --rounds 2 --gpu-work-steps 3 --out $OUT/run$i > $OUT/fuse_ab_$i.txt 2>&1
done
