#!/bin/bash
# Session 36, through the device tool (nvidia-h200), from the repository root: the final table with session 35's
# changes (code of 21cc71f: unit packs' short way, the C launcher), then the separate script, one machine start
# (as session 34's final/run.sh); first the unit entry check cold and warm on this host (cold_state.py, CPU only).
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import torch,triton,transformers,peft;print(torch.__version__, triton.__version__, transformers.__version__, peft.__version__)"
python benchmarks/experiments/cold_state.py 2>&1 | grep -v Warn | tee $OUT/cold_state.txt
python tools/bench_step.py --out $OUT --budget-s 280 --gpu-work-steps 2 \
    --configs checkpoint,save_on_cpu,baseline,intra_inter,intra_inter+checkpoint,intra_inter+checkpoint_but_last@2 \
    2>&1 | grep -v Warn > $OUT/bench.txt
tail -24 $OUT/bench.txt
timeout 230 python benchmarks/experiments/independent_ratios.py --rounds 3 > $OUT/independent.txt 2>&1
tail -24 $OUT/independent.txt
