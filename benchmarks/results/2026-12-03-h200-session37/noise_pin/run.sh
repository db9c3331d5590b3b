#!/bin/bash
# Session 37, through the device tool (nvidia-h200), from the repository root: the host's CPUs, then step_noise.py
# with the configuration's steps alternated between the main thread as it is and held to one CPU.
mkdir -p $OUT && export TRITON_INTERPRET=0 PYTHONPATH=.
(lscpu; cat /sys/kernel/mm/transparent_hugepage/enabled; cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor) > $OUT/host.txt 2>&1
grep -E "Model name|Thread|Core|Socket|L3|MHz|Hypervisor" $OUT/host.txt
timeout 300 python benchmarks/experiments/step_noise.py --shapes 4x1024 --configs intra_inter@2,intra_inter@4 --steps 40 --pin 2>&1 | grep -v Warn > $OUT/noise.txt
grep -v "^  " $OUT/noise.txt | tail -22
