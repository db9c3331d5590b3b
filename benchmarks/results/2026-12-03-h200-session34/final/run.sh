#!/bin/bash
# session 34: the final table (code of 9d6843b: NOTE [GC pause], NOTE [Lifetimes] rule 15), then the separate
# script with HF's default config (KV cache on), one machine start; as session 33's final/run.sh
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import torch,triton,transformers,peft;print(torch.__version__, triton.__version__, transformers.__version__, peft.__version__)"
python tools/bench_step.py --out $OUT --budget-s 280 --gpu-work-steps 2 \
    --configs checkpoint,save_on_cpu,baseline,intra_inter,intra_inter+checkpoint,intra_inter+checkpoint_but_last@2 \
    2>&1 | grep -v Warn > $OUT/bench.txt
tail -24 $OUT/bench.txt
timeout 250 python benchmarks/experiments/independent_ratios.py --rounds 3 > $OUT/independent.txt 2>&1
tail -24 $OUT/independent.txt
