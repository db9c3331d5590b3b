#!/bin/bash
# Session 27, through the device tool (nvidia-h200, a fresh start), from the repository root
export TRITON_INTERPRET=0 PYTHONPATH=.
python benchmarks/experiments/decode_lora_words.py > $OUT/decode_lora_words.txt 2>&1
