#!/usr/bin/env bash
# One prepared script for a lent GPU machine (torch, transformers, peft, accelerate; no network):
# the training and generation throughput benchmarks of the project's own code, in one call.
#   bash benchmarks/gpu_checks.sh            # writes logs and JSON tables to ${OUT:-gpu_results}
# Budget: under 9.5 minutes (a device call may run 10). The variants run most-promising first and
# each benchmark skips what its budget no longer covers; every finished variant is saved at once.
# Then, on the development machine: python benchmarks/record_gpu_results.py <the fetched folder>
# writes docs/benchmarks/gpu-DATE-CARD.md from these files; summarise it in docs/benchmarks/*.md.
#   GPU_CHECKS_CPU=1 bash benchmarks/gpu_checks.sh   # the same script with tiny models on the CPU,
#                                                   # to check the script itself (numbers mean nothing)
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${GPU_CHECKS_CPU:-0}" = 1 ]; then
    smoke=(--cpu); tiny=(--tiny); dev=(--device cpu --tokens 256 --hidden 64 --vocab 2000); rows=16,64
    nvidia_smi() { echo "name, memory.total [MiB], driver_version"; echo "cpu (GPU_CHECKS_CPU), 0 MiB, none"; }
    gen_variants=bauto-static,bauto-dynamic,b4-static
else
    smoke=(); tiny=(); dev=(--device cuda --tokens 4096 --hidden 4096 --vocab 128256); rows=64,256,390
    nvidia_smi() { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; }
    gen_variants=bauto-static,bauto-static-compile,bauto-dynamic,b256-static
fi
out=${OUT:-gpu_results}
mkdir -p "$out"
export PYTHONPATH=$PWD/src:${PYTHONPATH:-} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia_smi | tee "$out/gpu.txt"
python -c "import torch, transformers, peft, accelerate; print(torch.__version__, transformers.__version__, peft.__version__, accelerate.__version__)" | tee -a "$out/gpu.txt"
# functional checks of the GPU-only paths on a tiny model (bf16, SDPA, checkpointing, compile, resume)
timeout 120 python benchmarks/gpu_smoke.py ${smoke[@]+"${smoke[@]}"} 2>&1 | tee "$out/smoke.log"
# the seeded sampler's cost per decoding step, against the Gumbel-max form it replaced
timeout 40 python benchmarks/sampler_throughput.py --rows "$rows" 2>&1 | tee "$out/sampler.log"
# the chunked cross-entropy over the 128k vocabulary: fused (frozen head) vs checkpointed vs plain
timeout 40 python benchmarks/loss_throughput.py "${dev[@]}" 2>&1 | tee "$out/loss.log"
# training (LoRA r=16, seq 4096, 8B shape): the fastest candidates first, then the plain baselines
timeout 200 python benchmarks/train_throughput.py ${tiny[@]+"${tiny[@]}"} --all --budget 165 --timeout 120 \
    --json "$out/train.json" 2>&1 | tee "$out/train.log"
# generation (780 x 512 new tokens): the memory-planned batch with each cache, then a fixed batch
timeout 170 python benchmarks/generation_throughput.py ${tiny[@]+"${tiny[@]}"} --budget 80 --variants "$gen_variants" \
    --json "$out/generation.json" 2>&1 | tee "$out/generation.log"
