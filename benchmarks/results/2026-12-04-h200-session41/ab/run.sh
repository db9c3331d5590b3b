#!/bin/bash
# Session 41, through the device tool (nvidia-h200), from the repository root, code of the commit that adds this:
# replayed steps against deciding copies bit for bit, then step A/Bs (alternated steps) of this session's host trims
# against their absence ("session 40": view recipes and Function.apply's wrapper back), and the forward's host phases.
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import torch,triton,transformers,peft;print(torch.__version__, triton.__version__, transformers.__version__, peft.__version__)"
timeout 150 python tools/check_replay.py --deterministic strict --layers 4 --shape 1x1024 --host-shape 1x1024 --steps 2 \
    --presets intra_inter@2,intra_inter@4 2>&1 | tail -6 > $OUT/check_replay.txt; cat $OUT/check_replay.txt
timeout 170 python benchmarks/experiments/step_exposure.py --shapes 4x1024 --configs intra_inter@2,intra_inter@4 \
    --variants "as is,session 40,view recipes,as is again" --steps 20 2>&1 | grep -v Warn > $OUT/exposure_4x1024.txt
tail -12 $OUT/exposure_4x1024.txt
timeout 150 python benchmarks/experiments/step_exposure.py --shapes 1x8192 --configs intra_inter@2 \
    --variants "as is,session 40,as is again" --steps 12 2>&1 | grep -v Warn > $OUT/exposure_1x8192.txt
tail -7 $OUT/exposure_1x8192.txt
timeout 90 python benchmarks/experiments/forward_phases.py plain,intra_inter@2 2>&1 | grep -v Warn > $OUT/phases.txt
tail -4 $OUT/phases.txt
