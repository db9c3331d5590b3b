#!/bin/bash
# Session 12, device run 9: replay: same gradients, host time; the step table with replay on and off.
export TRITON_INTERPRET=0
PYTHONPATH=. python tools/check_replay.py --layers 2 --shape 1x1024 --steps 6 > $OUT/check_replay.txt 2>&1
tail -12 $OUT/check_replay.txt
PYTHONPATH=. python tools/bench_step.py --configs plain,intra@2,intra_inter@2,intra_inter@4,intra_inter_full_fuse@2,intra_inter+checkpoint@2 --out /tmp/on > $OUT/bench_on.txt 2>&1
cp /tmp/on/*.json $OUT/bench_on.json
tail -17 $OUT/bench_on.txt
PYTHONPATH=. python tools/bench_step.py --no-replay --configs plain,intra@2,intra_inter@2 --out /tmp/off > $OUT/bench_off.txt 2>&1
tail -9 $OUT/bench_off.txt
