#!/bin/bash
# Session 46, through the device tool (nvidia-h200), from the repository root: the LoRA branch node reads its saved
# input in 16 bits (NOTE [LoRA branch] rule 5). Replayed steps against the deciding copies (reference backward: bit
# for bit; kernels: within rounding); the branch passes' device time with a 16-bit input (CUDA graphs), by what they
# compute and with each pass's tiles swept; the step's kernels against plain's; steps alternated with the input
# decoded in fp32 as before.
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import torch,triton,transformers,peft;print(torch.__version__, triton.__version__, transformers.__version__, peft.__version__)"
for bw in ref auto; do
  timeout 120 python tools/check_replay.py --deterministic strict --layers 2 --shape 1x1024 --host-shape 1x1024 --steps 3 \
      --presets intra_inter@2,intra_inter@4 --branch-backward $bw 2>&1 | grep -v Warn | tail -6 > $OUT/check_replay_$bw.txt
  cat $OUT/check_replay_$bw.txt
done
timeout 60 python benchmarks/experiments/lora_branch_tiles.py --tokens 4096,8192 --breakdown --input-16 2>&1 \
  | tee $OUT/breakdown_16.txt
timeout 120 python benchmarks/experiments/lora_branch_tiles.py --tokens 4096,8192 --input-16 --passes input 2>&1 \
  | tee $OUT/tiles_16.txt | tail -4
timeout 150 python benchmarks/experiments/kernel_diff.py --shapes 4x1024 --configs intra_inter@2 --top 60 2>&1 \
  | grep -v Warn > $OUT/kernel_diff.txt
head -30 $OUT/kernel_diff.txt
