#!/bin/bash
# session 20: the LoRA and RoPE part kernels after their factor casts were shared (rope_part._to_half), on the GPU
export TRITON_INTERPRET=0 PYTHONPATH=.
python tools/check_rope_part.py > $OUT/check_rope_part.txt 2>&1; echo "rope rc=$?"; tail -6 $OUT/check_rope_part.txt
python tools/check_lora_part.py > $OUT/check_lora_part.txt 2>&1; echo "lora rc=$?"; tail -12 $OUT/check_lora_part.txt
