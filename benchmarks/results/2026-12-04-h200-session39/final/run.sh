#!/bin/bash
# Session 39, through the device tool (nvidia-h200), from the repository root, code of the commit that adds this:
# replayed steps against deciding copies bit for bit (rule 1 now reads peft's adapter fields), the forward's host
# parts, then the issue-6 table. The separate script runs in a second call (independent.sh).
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import torch,triton,transformers,peft;print(torch.__version__, triton.__version__, transformers.__version__, peft.__version__)"
timeout 150 python tools/check_replay.py --deterministic strict --layers 4 --shape 1x1024 --host-shape 1x1024 --steps 2 \
    --presets intra_inter@2,intra_inter@4 2>&1 | tail -6 > $OUT/check_replay.txt; cat $OUT/check_replay.txt
timeout 120 python benchmarks/experiments/host_parts.py intra_inter@2 4x1024 2>&1 | grep -v Warn > $OUT/host_parts.txt
cat $OUT/host_parts.txt
python tools/bench_step.py --out $OUT --budget-s 250 --gpu-work-steps 2 2>&1 | grep -v Warn > $OUT/bench.txt
tail -34 $OUT/bench.txt
