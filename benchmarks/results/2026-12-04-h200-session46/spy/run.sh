#!/bin/bash
# Session 46, through the device tool (nvidia-h200), from the repository root, with .venv/bin/py-spy carried: py-spy
# samples (native frames, every thread) 12 s of replayed 4x1024 steps of plain and intra_inter@2, raw stacks gzipped
# (read again on the dev machine: where the forward's host time goes outside the pack hook).
export TRITON_INTERPRET=0 PYTHONPATH=.
SPY=.venv/bin/py-spy
for cfg in plain intra_inter@2; do
  f=${cfg/@/_}
  python benchmarks/experiments/spy_step.py $cfg --shapes 4x1024 --seconds 18 > $OUT/$f.log 2>&1 &
  for i in $(seq 240); do grep -q READY $OUT/$f.log && break; sleep 1; done
  pid=$(grep READY $OUT/$f.log | cut -d' ' -f2)
  $SPY record --native --threads --rate 250 --duration 12 --format raw --output $OUT/$f.spy --pid $pid > $OUT/$f.spylog 2>&1
  wait
  python benchmarks/experiments/spy_step.py --summarise $OUT/$f.spy --top 30 > $OUT/$f.txt 2>&1
  gzip $OUT/$f.spy
  grep -v Warn $OUT/$f.log | tail -1; head -16 $OUT/$f.txt
done
