#!/bin/bash
# Session 42, through the device tool (nvidia-h200), code of the commit that adds this: checkpointed steps with the
# fused LoRA sum in each checkpointed layer's forward (NOTE [Region sums]) against without (region_sums.ENABLED
# off), first alternated step by step (step_exposure --checkpoint: "plain" is plain checkpointing), then bench_step
# runs with and without, one after the other, in the same machine start.
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import torch,triton,transformers,peft;print(torch.__version__, triton.__version__, transformers.__version__, peft.__version__)"
for shape in 4x1024 1x8192; do
  timeout 150 python benchmarks/experiments/step_exposure.py --shapes $shape --configs intra_inter@2,intra_inter@4 \
      --checkpoint --variants "as is,no region sums,as is again" --steps 15 2>&1 | grep -v Warn > $OUT/alternated_$shape.txt
  tail -9 $OUT/alternated_$shape.txt
done
timeout 110 python tools/bench_step.py --shapes 4x1024 --configs plain,checkpoint,intra_inter+checkpoint \
    --out $OUT/on --budget-s 70 --gpu-work-steps 1 2>&1 | grep -v Warn > $OUT/on.txt
tail -6 $OUT/on.txt
timeout 110 python -c "
import runpy, sys
import hyclora_hooks.region_sums as r
r.ENABLED = False
sys.argv = ['tools/bench_step.py', '--shapes', '4x1024', '--configs', 'plain,checkpoint,intra_inter+checkpoint',
            '--out', '$OUT/off', '--budget-s', '70', '--gpu-work-steps', '1']
runpy.run_path('tools/bench_step.py', run_name='__main__')
" 2>&1 | grep -v Warn > $OUT/off.txt
tail -6 $OUT/off.txt
