#!/bin/bash
# Session 28: Llama's attention as a replay unit (NOTE [Replay units] rule 5), on the device.
# Bits first (replay against deciding copies, deterministic), then attention units off / on in one process,
# then a shortened bench table. Run from the repository root: bash benchmarks/results/2026-12-02-h200-session28/attention_units/run.sh
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python -c "import torch, triton, transformers, peft; print(torch.__version__, triton.__version__, transformers.__version__, peft.__version__)"
python tools/check_replay.py --deterministic strict --layers 4 --shape 1x1024 --host-shape 4x1024 --steps 4 \
    --presets intra_inter@2,intra_inter@4,baseline 2>&1 | tail -12 | tee $OUT/check_replay.txt
python benchmarks/experiments/units_ab.py --attention --shapes 4x1024,1x8192 --configs baseline,intra_inter@2,intra_inter@4 \
    --steps 12 2>&1 | tail -8 | tee $OUT/units_ab.txt
python tools/bench_step.py --shapes 4x1024,1x8192 --configs plain,checkpoint,intra_inter@2,intra_inter@4,intra_inter+checkpoint@2 \
    --out $OUT --budget-s 240 2>&1 | tail -20 | tee $OUT/bench.txt
