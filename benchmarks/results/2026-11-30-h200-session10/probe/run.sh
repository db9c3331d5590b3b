#!/bin/bash
# Session 10 probe: GPU work by op at both shapes, and the H200 host's breakdown of a compressed forward.
P="python tools/profile_step.py --layers 8 --cprofile 0 --steps 3 --top 45"
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import torch,triton,transformers,peft;print(torch.__version__,triton.__version__,transformers.__version__,peft.__version__)"
for s in 1x8192 4x1024; do
  for c in plain intra_inter@2; do
    PYTHONPATH=. $P --shape $s --config $c > $OUT/prof-$s-${c/@/_}.txt 2>&1
  done
done
PYTHONPATH=. python tools/host_phases.py --layers 8 --shape 1x64 --config intra_inter@4 --steps 5 > $OUT/host-1x64.txt 2>&1
for f in $OUT/*.txt; do echo "== $f"; head -3 $f; grep "Self CUDA time total" $f; done
cat $OUT/host-1x64.txt | head -40
