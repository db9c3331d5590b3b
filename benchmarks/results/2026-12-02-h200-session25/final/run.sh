# session 25: weight views through the parameter fast path, on/off in one process, then the bench's full table
set -x
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import torch,triton,transformers,peft;print(torch.__version__, triton.__version__, transformers.__version__, peft.__version__)"
python benchmarks/experiments/param_view_ab.py --configs intra_inter@2,intra_inter@4 --steps 10 2>&1 | grep -v Warn > $OUT/param_view_ab.txt
tail -8 $OUT/param_view_ab.txt
python tools/bench_step.py --out $OUT --budget-s 380 --gpu-work-steps 2 2>&1 | grep -v Warn > $OUT/bench.txt
tail -40 $OUT/bench.txt
