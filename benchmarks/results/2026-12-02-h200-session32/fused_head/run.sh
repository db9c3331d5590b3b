#!/bin/bash
# Session 32, through the device tool (nvidia-h200), from the repository root: the loss head's gradient formed in
# the forward (NOTE [Fused head]; code of the commit that adds this). Bits against plain autograd on a tiny Llama,
# replayed steps against deciding copies, then a step's kernels against plain's at both shapes and the step table.
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import torch,triton,transformers,peft;print(torch.__version__, triton.__version__, transformers.__version__, peft.__version__)"
python tools/check_fused_head.py 2>&1 | grep -v Warn > $OUT/check_fused_head.txt; cat $OUT/check_fused_head.txt
python tools/check_replay.py --deterministic strict --layers 4 --shape 1x1024 --host-shape 1x1024 --steps 2 \
    --presets intra_inter@2,intra_inter@4 2>&1 | tail -6 > $OUT/check_replay.txt; cat $OUT/check_replay.txt
python benchmarks/experiments/kernel_diff.py --shapes 4x1024,1x8192 --configs intra_inter@2 > $OUT/kernel_diff.txt 2>&1
grep -v Warn $OUT/kernel_diff.txt | head -30
python tools/bench_step.py --out $OUT --budget-s 200 --gpu-work-steps 2 \
    --configs intra_inter,intra_inter+checkpoint@2,intra_inter+checkpoint_but_last@2 \
    2>&1 | grep -v Warn > $OUT/bench.txt
tail -16 $OUT/bench.txt
