#!/bin/bash
# session 21: gate's and up's frozen term X·W stored as the forward made it (NOTE [Frozen term]) against the
# t - part of 178835c (in $1): replay still bit for bit on the GPU, then the step A/B (both shapes, old and new
# alternated twice in one machine start)
export TRITON_INTERPRET=0
PYTHONPATH=. python tools/check_replay.py --deterministic strict --layers 8 --shape 1x1024 --steps 4 > $OUT/check_replay.txt 2>&1
echo "replay rc=$?"; tail -8 $OUT/check_replay.txt
bash benchmarks/ab_step.sh $1 plain,intra_inter@2,intra_inter@4
