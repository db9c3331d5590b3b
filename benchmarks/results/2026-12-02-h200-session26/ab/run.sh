set -x
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import torch,triton,transformers,peft;print(torch.__version__,triton.__version__,transformers.__version__,peft.__version__)"
old=.scratch/ab1/old
for tree in old new old new; do
  if [ $tree = old ]; then d=$old; else d=.; fi
  mkdir -p $OUT/$tree
  (cd $d && PYTHONPATH=. python tools/bench_step.py --shapes 4x1024 --configs baseline,intra_inter@2,intra_inter@4 --steps 6 --rounds 2 --out $OUT/$tree) > $OUT/$tree-$RANDOM.txt 2>&1
done
for f in $OUT/old-*.txt $OUT/new-*.txt; do echo "== $f"; tail -14 $f; done
python benchmarks/experiments/host_parts.py intra_inter@2 4x1024 2>&1 | grep -v Warn | tee $OUT/host_parts_new.txt
(cd $old && PYTHONPATH=. python benchmarks/experiments/host_parts.py intra_inter@2 4x1024 2>&1 | grep -v Warn | tee $OUT/host_parts_old.txt)
