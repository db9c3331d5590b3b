# session 28: attention units off / on again, in the slow start of final/ (right after it)
export TRITON_INTERPRET=0 PYTHONPATH=.
python benchmarks/experiments/units_ab.py --attention --shapes 4x1024 --configs baseline,intra_inter@2,intra_inter@4 \
    --steps 16 2>&1 | tail -6 | tee $OUT/units_ab.txt
