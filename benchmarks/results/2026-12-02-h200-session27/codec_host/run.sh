#!/bin/bash
# Session 27, through the device tool (nvidia-h200), from the repository root. Three calls:
#  1. (one machine start, code of 21463fd) host_parts.py only -> host_parts_other_start.txt (that call's
#     codec_host.py run imported a second copy of kernels.nonfinite, so its encodes settled outside the collector,
#     and ran outlier encodes uncalibrated: discarded)
#  2. (a fresh start) codec_host.py as committed -> codec_host_first.txt
#  3. (the same machine, right after) host_parts.py, then codec_host.py --reps 10 again (its table is in
#     docs/benchmarks.md, session 27) -> host_parts.txt
export TRITON_INTERPRET=0 PYTHONPATH=.
python benchmarks/experiments/codec_host.py --shape 4x1024 --reps 20 --top 45 > $OUT/codec_host_4x1024.txt 2>&1
python benchmarks/experiments/host_parts.py intra_inter@2 4x1024 > $OUT/host_parts.txt 2>&1
python benchmarks/experiments/codec_host.py --shape 4x1024 --reps 10 --top 5
