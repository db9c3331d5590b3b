#!/bin/bash
# Session 41, through the device tool (nvidia-h200): a direct launch's host time with tensor arguments against their
# addresses as ints (benchmarks/experiments/launch_pointers.py), twice.
export TRITON_INTERPRET=0 PYTHONPATH=.
for i in 1 2; do
  timeout 200 python benchmarks/experiments/launch_pointers.py 2>&1 | grep -v Warn > $OUT/pointers_$i.txt
  tail -12 $OUT/pointers_$i.txt
done
