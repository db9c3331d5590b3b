#!/bin/bash
# session 22: q's and k's frozen term X·W stored as the forward made it (NOTE [Frozen term] rule 4; rebuilt as
# rope(view(decoded + part)) by rope_part.rope_rebuild) against the t - part of f507b1f (in $1): the kernel against
# its reference, replay bit for bit on the GPU, then the step A/B (both shapes, old and new alternated twice in one
# machine start)
export TRITON_INTERPRET=0
PYTHONPATH=. python tools/check_rope_part.py > $OUT/check_rope_part.txt 2>&1
echo "rope rc=$?"; tail -12 $OUT/check_rope_part.txt
PYTHONPATH=. python tools/check_replay.py --deterministic strict --layers 8 --shape 1x1024 --steps 4 > $OUT/check_replay.txt 2>&1
echo "replay rc=$?"; tail -8 $OUT/check_replay.txt
bash benchmarks/ab_step.sh $1 plain,intra_inter@2,intra_inter@4
