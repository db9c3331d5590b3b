# session 29: the bitmask codec's pack through int64 words, then the dropout experiment again with it
export TRITON_INTERPRET=0 PYTHONPATH=.
python benchmarks/experiments/bitmask_speed.py 2>&1 | grep -v -i warn > $OUT/bitmask_speed.txt
cat $OUT/bitmask_speed.txt
python benchmarks/experiments/dropout_masks.py 2>&1 | grep -v -i warn > $OUT/dropout_masks.txt
tail -8 $OUT/dropout_masks.txt
