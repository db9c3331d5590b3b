#!/bin/bash
# Session 45, through the device tool (nvidia-h200), from the repository root, code of 1f799ad (the table's): replayed
# steps against the deciding copies with the node's reference backward (bit for bit) and its kernels, with the
# counted passing of adapter records; then the separate script at 4x1024 with twice the rounds.
export TRITON_INTERPRET=0 PYTHONPATH=.
for bw in ref auto; do
  timeout 120 python tools/check_replay.py --deterministic strict --layers 2 --shape 1x1024 --host-shape 1x1024 --steps 3 \
      --presets intra_inter@2,intra_inter@4 --branch-backward $bw 2>&1 | grep -v Warn | tail -6 > $OUT/check_replay_$bw.txt
  cat $OUT/check_replay_$bw.txt
done
timeout 200 python benchmarks/experiments/independent_ratios.py --shapes 4x1024 --rounds 8 2>&1 | grep -v Warn > $OUT/independent_4x1024.txt
tail -12 $OUT/independent_4x1024.txt
