#!/bin/bash
# Session 45, through the device tool (nvidia-h200), from the repository root, code of 03eb470: session 44's last
# change (launch plans keyed by rank and tiles, run of 4) checked against the deciding copies with the node's kernels
# and its reference backward; then where a 4x1024 step's GPU time goes by kernel against plain's, and a replayed
# forward's host time by part.
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import torch,triton,transformers,peft;print(torch.__version__, triton.__version__, transformers.__version__, peft.__version__)"
for bw in ref auto; do
  timeout 120 python tools/check_replay.py --deterministic strict --layers 2 --shape 1x1024 --host-shape 1x1024 --steps 3 \
      --presets intra_inter@2,intra_inter@4 --branch-backward $bw 2>&1 | grep -v Warn | tail -6 > $OUT/check_replay_$bw.txt
  cat $OUT/check_replay_$bw.txt
done
timeout 150 python benchmarks/experiments/kernel_diff.py --shapes 4x1024 --configs intra_inter@2 --top 60 2>&1 \
  | grep -v Warn > $OUT/kernel_diff.txt
head -75 $OUT/kernel_diff.txt
timeout 140 python benchmarks/experiments/host_parts.py intra_inter@2 4x1024 fine 2>&1 | grep -v Warn > $OUT/fine_2.txt
head -45 $OUT/fine_2.txt
