#!/bin/bash
# Session 12, device run 11: where a replayed forward's host time goes; replay on/off alternated at 4x1024.
export TRITON_INTERPRET=0
PYTHONPATH=. python tools/host_phases.py --config intra_inter@2 --layers 8 --shape 1x64 --steps 3 --cprofile 0 > $OUT/host.txt 2>&1
head -42 $OUT/host.txt
for r in replay no-replay replay no-replay; do
  PYTHONPATH=. python tools/bench_step.py --$r --shapes 4x1024 --configs plain,intra@2,intra_inter@2 --out /tmp/$r > $OUT/ab-$r.txt 2>&1
  grep -E "^4x1024 " $OUT/ab-$r.txt | sed "s/^/$r /" | tail -3
done
