#!/bin/bash
# Session 14: q/k's RoPE part kernel casting peft's fp32 factors itself (rope_lora_part): same bits, host time;
# then intra_inter's step at both shapes.
export TRITON_INTERPRET=0
PYTHONPATH=. python tools/check_rope_part.py > $OUT/rope.txt 2>&1
PYTHONPATH=. python tools/bench_step.py --configs intra_inter --steps 8 --out /tmp/r > $OUT/bench.txt 2>&1
cp /tmp/r/*.json $OUT/bench.json
tail -8 $OUT/rope.txt; tail -10 $OUT/bench.txt
