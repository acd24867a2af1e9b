#!/usr/bin/env bash
# The GPU path end to end: the smoke preset of every study on CUDA and on the CPU, in two
# temporary copies of the workflow, then their headline numbers side by side.
#   bash benchmarks/gpu_check.sh            (needs a CUDA GPU; about 3 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA GPU is visible to torch')"
work=$(mktemp -d)
for device in cpu cuda; do
    mkdir -p "$work/$device"
    cp -r Snakefile config.yaml configs rules workflow_scripts schemas envs report profiles "$work/$device/"
    echo "gpu_check: smoke preset, device $device"
    (cd "$work/$device" && snakemake --cores all all --configfile configs/smoke.yaml --config device="$device" --quiet progress)
done
python benchmarks/gpu_check.py "$work/cpu/results" "$work/cuda/results"
