#!/bin/bash
# Session 27, through the device tool (nvidia-h200, one machine start), from the repository root
export TRITON_INTERPRET=0 PYTHONPATH=.
python tools/profile_step.py --config plain --layers 8 --shape 4x1024 --cprofile 0 --top 45 --sort device \
    > $OUT/prof-plain-4x1024.txt 2>&1
python tools/profile_step.py --config intra_inter@2 --layers 8 --shape 4x1024 --cprofile 0 --top 45 --sort device \
    --by-recipe --recipe-kernels 8 > $OUT/prof-intra_inter2-4x1024.txt 2>&1
