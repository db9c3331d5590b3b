#!/bin/bash
# Session 11, device run 3: the RoPE part kernel across model families on CUDA, autocast tests on CUDA, host waits.
export TRITON_INTERPRET=0
PYTHONPATH=. python tools/check_model_families.py > $OUT/families.txt 2>&1
tail -3 $OUT/families.txt
HYCLORA_TEST_DEVICE=cuda python -m pytest -q tests/test_autocast.py > $OUT/autocast.txt 2>&1
tail -2 $OUT/autocast.txt
PYTHONPATH=. python tools/check_hot_path.py > $OUT/hot.txt 2>&1
tail -25 $OUT/hot.txt
