# session 26: the bench's full table, then the separate script, one machine start (code of the commit that adds this)
set -x
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import torch,triton,transformers,peft;print(torch.__version__, triton.__version__, transformers.__version__, peft.__version__)"
python tools/bench_step.py --out $OUT --budget-s 360 --gpu-work-steps 2 2>&1 | grep -v Warn > $OUT/bench.txt
tail -34 $OUT/bench.txt
timeout 210 python benchmarks/experiments/independent_ratios.py --rounds 3 > $OUT/independent.txt 2>&1
tail -24 $OUT/independent.txt
