# session 29: dropout masks packed to bits on the GPU (bits against plain autograd; memory and time at 4x1024)
export TRITON_INTERPRET=0 PYTHONPATH=.
python benchmarks/experiments/dropout_masks.py 2>&1 | grep -v Warn > $OUT/dropout_masks.txt
cat $OUT/dropout_masks.txt
