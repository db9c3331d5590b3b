#!/bin/bash
# (Second run: the node saved its fp32 input as a view through a one-line autograd Function tied to a 0-d leaf,
# two more Function calls a LoRA linear; replaced before the third run by the cast with a node to the input.)
# Session 44, through the device tool (nvidia-h200), from the repository root: the LoRA branch node (NOTE [LoRA
# branch]). Replayed steps against deciding copies with the node's reference backward (bit for bit) and with its
# kernels (cosines), then steps alternated with the node on and off at both shapes, 8 layers.
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import torch,triton,transformers,peft;print(torch.__version__, triton.__version__, transformers.__version__, peft.__version__)"
for bw in ref auto; do
  python tools/check_replay.py --deterministic strict --layers 2 --shape 1x1024 --host-shape 1x1024 --steps 3 \
      --presets intra_inter@2,intra_inter@4 --branch-backward $bw 2>&1 | grep -v Warn | tail -6 > $OUT/check_replay_$bw.txt
  cat $OUT/check_replay_$bw.txt
done
python benchmarks/experiments/step_exposure.py --shapes 4x1024,1x8192 --configs intra_inter@2,intra_inter@4 \
    --steps 10 --variants "as is,no branch node,as is again" 2>&1 | grep -v Warn > $OUT/exposure.txt
tail -12 $OUT/exposure.txt
