#!/bin/bash
# Session 38, through the device tool (nvidia-h200), from the repository root, with .venv/bin/py-spy carried: py-spy
# samples (native frames, every thread) 15 s of replayed 4x1024 steps of plain, intra_inter@2 and intra_inter@4
# (first run, before the summary split off waiting samples: plain alone came back, its raw stacks gzipped here and
# summarised again; files named without the '@', which the device tool does not bring back).
export TRITON_INTERPRET=0 PYTHONPATH=.
SPY=.venv/bin/py-spy
for cfg in ${CONFIGS:-plain intra_inter@2 intra_inter@4}; do
  f=${cfg/@/_}
  python benchmarks/experiments/spy_step.py $cfg --shapes 4x1024 --seconds 22 > $OUT/$f.log 2>&1 &
  for i in $(seq 240); do grep -q READY $OUT/$f.log && break; sleep 1; done
  pid=$(grep READY $OUT/$f.log | cut -d' ' -f2)
  $SPY record --native --threads --rate 200 --duration 15 --format raw --output $OUT/$f.spy --pid $pid > $OUT/$f.spylog 2>&1
  wait
  python benchmarks/experiments/spy_step.py --summarise $OUT/$f.spy --top 30 > $OUT/$f.txt 2>&1
  grep -v Warn $OUT/$f.log | tail -1; head -50 $OUT/$f.txt | grep -v "^   0\.[0-4]"
done
