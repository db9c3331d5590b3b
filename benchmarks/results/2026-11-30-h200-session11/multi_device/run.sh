#!/bin/bash
# Session 11, device run 8 (2 GPUs): kernels launch on their tensors' GPU? Old tree (39ec0d3, before NOTE
# [Lifetimes] rule 13) and new, model on cuda:1 with cuda:0 current.
export TRITON_INTERPRET=0
R=$(pwd)
(cd $R/.scratch/ab/old && PYTHONPATH=. python tools/check_multi_device.py > $OUT/old.txt 2>&1); echo "old rc=$?"; tail -12 $OUT/old.txt
PYTHONPATH=. python tools/check_multi_device.py > $OUT/new.txt 2>&1; echo "new rc=$?"; tail -12 $OUT/new.txt
