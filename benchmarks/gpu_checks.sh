#!/usr/bin/env bash
# One prepared script for a lent GPU machine (torch, transformers, peft, accelerate; no network):
# the training and generation throughput benchmarks of the project's own code, in one call.
#   bash benchmarks/gpu_checks.sh            # writes logs and JSON tables to ${OUT:-gpu_results}
# Budget: about 9 minutes. Each benchmark prints tokens/s per variant and MFU; copy the figures
# (with the card's name from nvidia-smi) into docs/benchmarks/*.md.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu_results}
mkdir -p "$out"
export PYTHONPATH=$PWD/src:${PYTHONPATH:-} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python -c "import torch, transformers, peft, accelerate; print(torch.__version__, transformers.__version__, peft.__version__, accelerate.__version__)" | tee -a "$out/gpu.txt"
# training: the fastest candidates first, then the plain baselines
timeout 300 python benchmarks/train_throughput.py --all --timeout 120 --json "$out/train.json" 2>&1 | tee "$out/train.log"
# generation: the AHB workload (780 completions) at large batches, static cache with compile
timeout 240 python benchmarks/generation_throughput.py --batch-sizes 128,256 --caches dynamic,static-compile \
    --json "$out/generation.json" 2>&1 | tee "$out/generation.log"
