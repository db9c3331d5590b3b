#!/bin/bash
# Session 14: P3's forward for a plain LoRA part (today's five calls against one addmm), then bench_step's new
# replayed_steps on the GPU for intra_inter at both shapes.
export TRITON_INTERPRET=0
PYTHONPATH=. python benchmarks/experiments/lora_part_forward.py --tokens 4096,8192 > $OUT/lora_part.txt 2>&1
PYTHONPATH=. python tools/bench_step.py --configs intra_inter --out /tmp/b > $OUT/bench.txt 2>&1
cp /tmp/b/*.json $OUT/bench.json
cat $OUT/lora_part.txt; tail -12 $OUT/bench.txt
