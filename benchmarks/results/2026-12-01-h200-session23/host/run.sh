# session 23: host phases at 1x64 (8 layers) and cProfiles of replayed forwards; the @-named outputs did not come back
set -x
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import torch,triton;print(torch.__version__, triton.__version__)"
for c in plain baseline intra_inter@2 intra_inter@4; do
  python tools/host_phases.py --config $c --shape 1x64 --layers 8 --steps 8 2>&1 | grep -v Warning | head -30 > $OUT/phases_$c.txt
done
python benchmarks/experiments/forward_cprofile.py intra_inter@4 --layers 8 > $OUT/cprof_ii4.txt 2>&1
python benchmarks/experiments/forward_cprofile.py intra_inter@2 --layers 8 > $OUT/cprof_ii2.txt 2>&1
head -3 $OUT/phases_*.txt
