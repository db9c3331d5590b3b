#!/bin/bash
# Session 41, through the device tool (nvidia-h200), a seventh machine start, code of the commit that adds this:
# checkpointed steps with the fused LoRA sum in each checkpointed layer's forward (NOTE [Region sums]), then
# without (region_sums.ENABLED off), 4x1024.
export TRITON_INTERPRET=0 PYTHONPATH=.
timeout 100 python tools/bench_step.py --shapes 4x1024 --configs plain,checkpoint,intra_inter+checkpoint \
    --out $OUT/on --budget-s 70 --gpu-work-steps 1 2>&1 | grep -v Warn > $OUT/on.txt
tail -6 $OUT/on.txt
timeout 100 python -c "
import runpy, sys
import hyclora_hooks.region_sums as r
r.ENABLED = False
sys.argv = ['tools/bench_step.py', '--shapes', '4x1024', '--configs', 'plain,checkpoint,intra_inter+checkpoint',
            '--out', '$OUT/off', '--budget-s', '70', '--gpu-work-steps', '1']
runpy.run_path('tools/bench_step.py', run_name='__main__')
" 2>&1 | grep -v Warn > $OUT/off.txt
tail -6 $OUT/off.txt
