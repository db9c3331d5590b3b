#!/bin/bash
# Session 41, through the device tool (nvidia-h200), from the repository root, code of the commit that adds this:
# a direct launch's host time as shipped (NOTE [Direct launch] rule 6) against session 40's wrapper and the bare C
# launcher; replayed steps against deciding copies bit for bit; step A/Bs against "session 40" (view recipes and
# Function.apply's wrapper back; the launch trim and the inlined pack-path helpers stay); the forward's host phases.
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 200 python benchmarks/experiments/launch_pointers.py 2>&1 | grep -v Warn > $OUT/pointers.txt
tail -15 $OUT/pointers.txt
timeout 150 python tools/check_replay.py --deterministic strict --layers 4 --shape 1x1024 --host-shape 1x1024 --steps 2 \
    --presets intra_inter@2,intra_inter@4 2>&1 | tail -6 > $OUT/check_replay.txt; cat $OUT/check_replay.txt
timeout 170 python benchmarks/experiments/step_exposure.py --shapes 4x1024 --configs intra_inter@2,intra_inter@4 \
    --variants "as is,session 40,as is again" --steps 20 2>&1 | grep -v Warn > $OUT/exposure_4x1024.txt
tail -10 $OUT/exposure_4x1024.txt
timeout 90 python benchmarks/experiments/forward_phases.py plain,intra_inter@2 2>&1 | grep -v Warn > $OUT/phases.txt
tail -4 $OUT/phases.txt
