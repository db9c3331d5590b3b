set -x
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import torch,triton,transformers,peft;print(torch.__version__,triton.__version__,transformers.__version__,peft.__version__)"
for c in plain baseline intra_inter@2 intra_inter@4; do
  python benchmarks/experiments/host_parts.py $c 4x1024 2>&1 | grep -v Warning | tee -a $OUT/host_parts_bwd.txt
done
