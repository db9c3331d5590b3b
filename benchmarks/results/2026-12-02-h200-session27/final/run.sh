# session 27: a shorter final table (the device time left), one machine start (code of the commit that adds this)
set -x
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import torch,triton,transformers,peft;print(torch.__version__, triton.__version__, transformers.__version__, peft.__version__)"
python tools/bench_step.py --out $OUT --budget-s 270 --gpu-work-steps 2 \
    --configs checkpoint,intra_inter,intra_inter+checkpoint_but_last@2 2>&1 | grep -v Warn > $OUT/bench.txt
tail -16 $OUT/bench.txt
