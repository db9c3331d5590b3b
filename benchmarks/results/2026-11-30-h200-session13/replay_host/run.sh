#!/bin/bash
export TRITON_INTERPRET=0
PYTHONPATH=. python tools/check_replay.py --layers 8 --shape 1x1024 --host-shape 4x1024 --steps 5 --presets intra_inter@2,intra_inter@4,intra_inter_full_fuse@2,intra@2 > $OUT/check_replay.txt 2>&1
PYTHONPATH=. python tools/host_phases.py --config intra_inter@2 --layers 8 --shape 1x64 --steps 10 > $OUT/host_phases.txt 2>&1
tail -9 $OUT/check_replay.txt; tail -24 $OUT/host_phases.txt
