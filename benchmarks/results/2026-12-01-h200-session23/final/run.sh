#!/usr/bin/env bash
# session 23 (commit 0bd6d99: intra_inter+checkpoint_but_last added): issue 6's run (bench_step defaults, GPU work 2
# steps), then in a second call of the same machine start the separate script (independent.sh)
set -u
export TRITON_INTERPRET=0 PYTHONPATH=.
timeout 590 python tools/bench_step.py --out $OUT --budget-s 420 --gpu-work-steps 2 > $OUT/bench.txt 2>&1
tail -28 $OUT/bench.txt
