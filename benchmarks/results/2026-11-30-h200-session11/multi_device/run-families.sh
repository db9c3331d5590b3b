#!/bin/bash
# Session 11, device run 7 (2 GPUs): a model on cuda:1 while the current device is cuda:0.
export TRITON_INTERPRET=0
nvidia-smi -L
for dev in cuda:1 cuda:0; do
  timeout 200 env PYTHONPATH=. python tools/check_model_families.py --models llama,mistral --bits 8,4,2 --device $dev > $OUT/families-${dev/:/}.txt 2>&1
  echo "$dev rc=$?"; tail -25 $OUT/families-${dev/:/}.txt
done
