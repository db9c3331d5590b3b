#!/bin/bash
# session 19: P3's t - part quantized in one read (gate/up, 4-bit token groups), three drafts of one change.
# The third draft is commit 661066a (reverted by c6eb714); rerun with `git checkout 661066a`, then from the
# repository root:
export TRITON_INTERPRET=0 PYTHONPATH=.
# check_dot_part_first.txt (661066a: tl.dot part, formed before the data is loaded; warps x channels a program)
python tools/check_quant_difference.py --warps 2,4,8 --cols 64,128
# The two earlier drafts were not committed (each differs from 661066a only in the kernel's part):
#  - check_kloop.txt, lora_part_kloop.txt, ab_kloop/: the part summed term by term (a K loop of strided loads) in
#    quant._lora_part_tile, for the LoRA part kernel too; lora_part_dot.txt is the LoRA part kernel of f969b03 (old)
#  - check_dot.txt, lora_part_shared_dot.txt, ab_dot/: the part by tl.dot as in f969b03's LoRA part kernel, the data
#    loaded first (--warps 2,4; no --cols)
python tools/check_lora_part.py --tokens 8192
# ab_*/: benchmarks/ab_step.sh with OLD = `git archive f969b03 hyclora_hooks kernels tools policies pyproject.toml`
bash benchmarks/ab_step.sh .scratch/ab1/old intra_inter@2
