#!/bin/bash
# Session 35, through the device tool (nvidia-h200), from the repository root. host_parts_first.txt: a replayed
# 4x1024 intra_inter@2 forward's host time by part with the long way's and an encode's parts (host_parts.py ...
# fine), code of b09a8bb. This run (host_parts.txt, unit_packs.txt), with the replayed unit packs' short way
# (engine.UNIT_PACKS): the same parts plus a quantize call's, then that path A/B'd, steps alternated in one process.
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python benchmarks/experiments/host_parts.py plain 4x1024 2>&1 | grep -v Warn | tee -a $OUT/host_parts.txt
python benchmarks/experiments/host_parts.py intra_inter@2 4x1024 fine 2>&1 | grep -v Warn | tee -a $OUT/host_parts.txt
python benchmarks/experiments/step_exposure.py --shapes 4x1024 --configs intra_inter@2,intra_inter@4 --steps 25 \
  --variants "as is,long-way unit packs" 2>&1 | grep -v Warn | tail -9 | tee $OUT/unit_packs.txt
