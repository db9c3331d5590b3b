#!/bin/bash
# Session 45, through the device tool (nvidia-h200), from the repository root, code of the commit that adds this:
# the LoRA branch node without the adapters' views in its saved tensors (NOTE [LoRA branch] rule 2, a replay passes
# over their records). Replayed steps against the deciding copies bit for bit (reference backward), then steps
# alternated with the views saved as before, then aten calls and launches a forward against plain's.
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import torch,triton,transformers,peft;print(torch.__version__, triton.__version__, transformers.__version__, peft.__version__)"
timeout 120 python tools/check_replay.py --deterministic strict --layers 2 --shape 1x1024 --host-shape 1x1024 --steps 3 \
    --presets intra_inter@2,intra_inter@4 --branch-backward ref 2>&1 | grep -v Warn | tail -6 > $OUT/check_replay_ref.txt
cat $OUT/check_replay_ref.txt
timeout 300 python benchmarks/experiments/step_exposure.py --shapes 4x1024,1x8192 --configs intra_inter@2,intra_inter@4 \
    --steps 10 --variants "as is,saved adapter views,as is again" 2>&1 | grep -v Warn > $OUT/exposure.txt
tail -14 $OUT/exposure.txt
timeout 100 python benchmarks/experiments/host_calls.py --configs plain,intra_inter@2 --layers 8 --shape 4x1024 --steps 2 \
    2>&1 | grep -v Warn > $OUT/host_calls.txt
head -60 $OUT/host_calls.txt
