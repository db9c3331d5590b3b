#!/bin/bash
# Session 11, device run 5: where the forward's host time goes now (cProfile, 8 layers at 1x64), and host_phases.
export TRITON_INTERPRET=0
PYTHONPATH=. python benchmarks/experiments/forward_cprofile.py intra_inter@2 --layers 8 > $OUT/cprofile.txt 2>&1
PYTHONPATH=. python tools/host_phases.py --shape 1x64 --layers 8 --config intra_inter@2 > $OUT/host.txt 2>&1
head -40 $OUT/host.txt
head -70 $OUT/cprofile.txt | cut -c1-160
