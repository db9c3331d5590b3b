# session 28: decoder layers and MLPs as replay units (NOTE [Replay units] rule 6): bits against deciding copies
# (deterministic), then composite units off / on in one process. Code of the commit that adds this.
export TRITON_INTERPRET=0 PYTHONPATH=.
python tools/check_replay.py --deterministic strict --layers 4 --shape 1x1024 --host-shape 4x1024 --steps 4 \
    --presets intra_inter@2,intra@2,baseline 2>&1 | tail -8 | tee $OUT/check_replay.txt
python benchmarks/experiments/units_ab.py --composite --shapes 4x1024,1x8192 --configs baseline,intra@2,intra_inter@2 \
    --steps 12 2>&1 | tail -8 | tee $OUT/units_ab.txt
# then, a new machine start: intra@2 alone with 8 steps (its 4-step host timing above met a one-off slow step)
python tools/check_replay.py --deterministic strict --layers 4 --shape 1x1024 --host-shape 4x1024 --steps 8 --presets intra@2 2>&1 | tail -5 | tee $OUT/check_replay_intra_steps8.txt
