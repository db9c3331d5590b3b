#!/bin/bash
# Session 11, device run 10 (2 GPUs): the three new GPU checks after f1242b7 (one table printer).
export TRITON_INTERPRET=0
for t in check_rope_part check_cast_into check_multi_device; do
  PYTHONPATH=. python tools/$t.py > $OUT/$t.txt 2>&1; echo "$t rc=$?"; tail -12 $OUT/$t.txt
done
