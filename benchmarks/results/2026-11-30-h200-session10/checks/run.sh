#!/bin/bash
# Session 10, device run 3: autocast tests under CUDA, SDPA backends fidelity, GPU work of the main configurations.
python -m pytest --version 2>&1 | head -1
HYCLORA_TEST_DEVICE=cuda python -m pytest -q -p no:cacheprovider tests/test_autocast.py > $OUT/autocast.txt 2>&1
tail -3 $OUT/autocast.txt
PYTHONPATH=. python tools/check_sdpa_backends.py --model tiny-llama --policy intra_inter --policy baseline > $OUT/backends.txt 2>&1
tail -14 $OUT/backends.txt
PYTHONPATH=. python tools/bench_step.py --shapes 4x1024,1x8192 --configs intra_inter@2,intra_inter@4,intra_inter+checkpoint@2 --steps 8 --gpu-work-steps 2 --out /tmp/gw > $OUT/gpuwork.txt 2>&1
cp /tmp/gw/*.json $OUT/gpuwork.json
tail -12 $OUT/gpuwork.txt
