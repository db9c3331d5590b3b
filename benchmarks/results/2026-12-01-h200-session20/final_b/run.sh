#!/usr/bin/env bash
# session 20, the code at its end (the commit that adds this file: RoPE part tiles + widening kernel): issue 6's
# run trimmed to plain and intra_inter at both widths (the device time left), GPU work over 2 steps
set -u
export TRITON_INTERPRET=0 PYTHONPATH=.
python tools/bench_step.py --configs plain,intra_inter@2,intra_inter@4 --out $OUT --budget-s 150 \
  --gpu-work-steps 2 > $OUT/bench.txt 2>&1; echo "rc=$?"
tail -9 $OUT/bench.txt
