#!/usr/bin/env bash
# session 17: RMSNorm's fp32 input decoded straight into fp32 (quant.dequantize_to, Entry.decode_to) and the
# element dequantize kernel through the direct launcher. Bits and timing of the decode, then 404aa39 (unpacked into
# .scratch/ab18/old by `git archive 404aa39 hyclora_hooks kernels tools policies pyproject.toml`) against this
# tree, alternated twice in one machine start.
set -u
export TRITON_INTERPRET=0
PYTHONPATH=. python benchmarks/experiments/dequant_wide.py > $OUT/dequant_wide.txt 2>&1
cat $OUT/dequant_wide.txt
bash benchmarks/ab_step.sh .scratch/ab18/old intra_inter@2,intra_inter_full_fuse@2  # (the loop was inline when it ran; same commands)
