#!/bin/bash
# Session 49 (copied from session 47, unrun there), through the device tool (nvidia-h200), from the repository root: replayed steps against the
# deciding copies with the nodes' kernels (the LoRA branch node's forward kernel and 16-bit saved input, NOTE [LoRA
# branch] rules 6-7; the norm nodes, NOTE [Norm node]) and with peft's and Llama's ops (bit for bit); then the
# branch node's forward kernel alone (device time of CUDA-graph replays) against peft's ops with one fp32 cast
# (session 46's baseline cast twice; corrected in d2b10e5), three tile settings, 4x1024 and 1x8192.
export TRITON_INTERPRET=0 PYTHONPATH=.
for bw in ref auto; do
  timeout 120 python tools/check_replay.py --deterministic strict --layers 2 --shape 1x1024 --host-shape 1x1024 --steps 3 \
      --presets intra_inter@2,intra_inter@4 --branch-backward $bw 2>&1 | grep -v Warn | tail -6 > $OUT/check_replay_$bw.txt
  cat $OUT/check_replay_$bw.txt
done
timeout 200 python benchmarks/experiments/lora_branch_tiles.py --tokens 4096,8192 --forward \
    --settings "32,128,1,4,3;32,64,1,4,3;16,128,1,4,3" 2>&1 | grep -v Warn > $OUT/forward_tiles.txt
tail -20 $OUT/forward_tiles.txt
