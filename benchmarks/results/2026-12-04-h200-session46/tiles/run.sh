#!/bin/bash
# Session 46: each pass of the LoRA branch's backward swept on its own tiles (kernels.TILES). tiles_calls.txt: the
# first run, timed call by call (host-bound: identical settings differed by 15%); tiles.txt: device time through CUDA
# graphs.
set -x
export TRITON_INTERPRET=0 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv | tee $OUT/gpu.txt
python benchmarks/experiments/lora_branch_tiles.py --tokens 4096,8192 --settings "64,64,4,4,3;64,64,2,4,3;64,64,1,4,3;64,64,8,4,3;32,64,4,4,3;128,64,4,4,3;128,64,2,8,3;64,128,2,4,3;64,128,1,4,3;64,128,2,4,4;64,128,4,8,3;32,128,4,4,3;64,64,4,4,2;64,64,4,4,4;128,128,2,8,3;128,128,1,8,3;64,64,4,8,3;64,256,1,8,3" 2>&1 | tee $OUT/tiles.txt
