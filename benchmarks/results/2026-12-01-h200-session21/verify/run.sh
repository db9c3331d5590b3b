#!/bin/bash
# session 21: session 20's last two commits (bafa149 swiglu.build_with_round, 9bed405 swiglu.HALVES) touched every
# fused kernel module's set-up and were not run on a GPU: each kernel's own check, and the widening kernel's sweep
export TRITON_INTERPRET=0 PYTHONPATH=.
python tools/check_rope_part.py > $OUT/check_rope_part.txt 2>&1; echo "rope rc=$?"; tail -6 $OUT/check_rope_part.txt
python tools/check_lora_part.py > $OUT/check_lora_part.txt 2>&1; echo "lora rc=$?"; tail -12 $OUT/check_lora_part.txt
python tools/check_norm_tail.py > $OUT/check_norm_tail.txt 2>&1; echo "norm rc=$?"; tail -8 $OUT/check_norm_tail.txt
python tools/check_cast_into.py > $OUT/check_cast_into.txt 2>&1; echo "cast_into rc=$?"; tail -6 $OUT/check_cast_into.txt
python -u benchmarks/experiments/widen_tiles.py > $OUT/widen_tiles.txt 2>&1; echo "tiles rc=$?"; grep -v "^{" $OUT/widen_tiles.txt | tail -8
