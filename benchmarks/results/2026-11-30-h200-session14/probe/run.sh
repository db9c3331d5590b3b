#!/bin/bash
# Session 14, first device run: the forward's GPU work by aten op and kernel (plain vs intra_inter@2) at both shapes,
# then per-step spikes at 1x8192 (GC generations, allocator device calls).
export TRITON_INTERPRET=0
for s in 4x1024 1x8192; do
  PYTHONPATH=. python benchmarks/experiments/forward_kernels.py --layers 8 --shape $s --steps 2 --rows 30 > $OUT/fwd-$s.txt 2>&1
done
PYTHONPATH=. python benchmarks/experiments/step_spikes.py --layers 8 --shape 1x8192 --configs intra_inter@2,plain --steps 24 > $OUT/spikes-1x8192.txt 2>&1
