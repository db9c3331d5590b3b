#!/bin/bash
# Session 28: why a 4x1024 intra_inter@2 step spreads 124-152 ms in bench_step (plain: 111 +- 1 ms) when the
# units A/B of the same machine start measured 124 ms medians: per-step host/event times, GC and allocator calls
# (step_spikes.py), then bench_step with and without the checkpoint configuration before it.
export TRITON_INTERPRET=0 PYTHONPATH=.
python benchmarks/experiments/step_spikes.py --shape 4x1024 --configs intra_inter@2,plain,intra_inter@2 --steps 16 \
    2>&1 | grep -v Warn | tail -48 | tee $OUT/step_spikes.txt
for configs in plain,intra_inter@2 plain,checkpoint,intra_inter@2; do
    python tools/bench_step.py --shapes 4x1024 --configs $configs --out $OUT --budget-s 120 2>&1 | tail -6 \
        | tee -a $OUT/bench_configs.txt
done
