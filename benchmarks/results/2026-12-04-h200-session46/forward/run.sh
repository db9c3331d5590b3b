#!/bin/bash
# Session 46, through the device tool (nvidia-h200), from the repository root: the LoRA branch node's forward in one
# kernel (NOTE [LoRA branch] rule 6). Replayed steps against the deciding copies (reference passes: bit for bit;
# kernels: within rounding), then the forward's device time against peft's ops (CUDA graphs) with its tiles swept.
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
for bw in ref auto; do
  timeout 120 python tools/check_replay.py --deterministic strict --layers 2 --shape 1x1024 --host-shape 1x1024 --steps 3 \
      --presets intra_inter@2,intra_inter@4 --branch-backward $bw 2>&1 | grep -v Warn | tail -6 > $OUT/check_replay_$bw.txt
  cat $OUT/check_replay_$bw.txt
done
timeout 200 python benchmarks/experiments/lora_branch_tiles.py --tokens 4096,8192 --forward --settings "32,64,1,4,3;16,64,1,4,3;64,64,1,4,3;32,128,1,4,3;16,128,1,4,3;32,64,1,4,4;32,64,1,4,2;32,64,1,8,3;64,128,1,8,3;16,256,1,4,3;32,256,1,8,3" 2>&1 | tee $OUT/forward_tiles.txt
