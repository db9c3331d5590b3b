#!/bin/bash
# session 19: tile sweep of the LoRA part kernel's subtract mode (commit of the experiment: see git log)
export TRITON_INTERPRET=0 PYTHONPATH=.
python benchmarks/experiments/lora_part_tiles.py > $OUT/lora_part_tiles.txt 2>&1
# lora_part_walk.txt: at commit 6a94dfc (the kernel then had _ROW_BLOCKS, programs walking row tiles):
#   python benchmarks/experiments/lora_part_tiles.py --walk > $OUT/lora_part_walk.txt 2>&1
