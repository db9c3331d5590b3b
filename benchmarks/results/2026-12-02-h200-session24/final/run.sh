# session 24: units on/off in one process (LoRA linears and RMSNorms), then the bench's full table
set -x
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import torch,triton,transformers,peft;print(torch.__version__, triton.__version__, transformers.__version__, peft.__version__)"
git log --oneline -1 2>/dev/null
python benchmarks/experiments/units_ab.py --steps 12 2>&1 | grep -v Warn > $OUT/units_ab.txt
tail -12 $OUT/units_ab.txt
python tools/bench_step.py --out $OUT --budget-s 400 --gpu-work-steps 2 2>&1 | grep -v Warn > $OUT/bench.txt
tail -40 $OUT/bench.txt
