#!/bin/bash
# session 18: step A/B of the token tile kernel without the outlier select (this commit) against 1cdc2c0 (the
# final table's code; .scratch/ab2/old: `git archive 1cdc2c0 hyclora_hooks kernels tools policies pyproject.toml`)
export TRITON_INTERPRET=0 PYTHONPATH=.
bash benchmarks/ab_step.sh .scratch/ab2/old intra_inter@2
