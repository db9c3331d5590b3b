#!/bin/bash
# Session 14: after the exit's settling left the op tracker (NOTE [Replay] rule 8): how steps end at both shapes,
# then the issue-6 table.
export TRITON_INTERPRET=0
for s in 1x8192 4x1024; do
  PYTHONPATH=. python benchmarks/experiments/step_spikes.py --layers 8 --shape $s --configs intra_inter@2 --steps 12 > $OUT/ends-$s.txt 2>&1
done
PYTHONPATH=. python tools/bench_step.py --out /tmp/final --budget-s 330 > $OUT/final.txt 2>&1
cp /tmp/final/*.json $OUT/final.json
grep -h "step " $OUT/ends-*.txt | cut -c1-60,150-400
tail -29 $OUT/final.txt | head -27
