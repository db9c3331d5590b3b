#!/bin/bash
# session 18: kernels by phase (forward / backward) for plain and intra_inter@2, and by backward decode kind, 1x8192
# (ran at commit 3b2853e; --phase-kernels was removed after it: its forward / backward split by launch time came
# out wrong, see docs/benchmarks.md session 18. Rerun with `git checkout 3b2853e -- tools/profile_step.py`.)
export TRITON_INTERPRET=0 PYTHONPATH=.
for cfg in plain intra_inter@2; do
python tools/profile_step.py --config $cfg --layers 8 --shape 1x8192 --cprofile 0 --steps 2 --top 5 \
  --recipe-kernels 8 --phase-kernels 40 --name-width 110 > $OUT/kernels-${cfg/@/-}-1x8192.txt 2>&1
done
grep -A 100 "by backward decode kind" $OUT/kernels-intra_inter-2-1x8192.txt | cut -c1-140 | head -100
grep -A 3 "by phase" $OUT/kernels-*.txt | grep -v "^--"
grep "ms/step" $OUT/kernels-*.txt | grep -v "    "
