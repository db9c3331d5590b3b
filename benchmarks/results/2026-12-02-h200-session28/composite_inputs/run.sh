# session 28: rule 6 with call inputs taken at entry (decoder layers as units under intra_inter): bits against
# deciding copies (deterministic), then rule 6 off / on in one process. Code of c293c15 (trimmed to the device
# time left).
export TRITON_INTERPRET=0 PYTHONPATH=.
python tools/check_replay.py --deterministic strict --layers 4 --shape 1x1024 --host-shape 4x1024 --steps 4 \
    --presets intra_inter@2,intra_inter@4 2>&1 | tail -6 | tee $OUT/check_replay.txt
python benchmarks/experiments/units_ab.py --composite --shapes 4x1024 --configs intra_inter@2 \
    --steps 10 2>&1 | tail -4 | tee $OUT/units_ab.txt
