#!/bin/bash
# Session 13, last device run (before check_replay reset calibration per preset): replay vs decide vs exact with
# deterministic cuDNN attention backward, then the host breakdown, after the GC-object cuts and the cached walk.
export TRITON_INTERPRET=0
PYTHONPATH=. python tools/check_replay.py --deterministic strict --layers 8 --shape 1x1024 --host-shape 4x1024 --steps 4 --presets intra_inter@2,intra_inter@4,baseline > $OUT/check_replay.txt 2>&1
PYTHONPATH=. python tools/host_phases.py --config intra_inter@2 --layers 8 --shape 1x64 --steps 10 > $OUT/host_phases.txt 2>&1
