#!/usr/bin/env bash
# The device check: one command for a GPU machine (one H200 or H100, 16 cores, no network) that
# fits in 6 minutes (its steps' limits add up to 340 s). From the repository root:
#
#     bash benchmarks/device_check.sh
#
# 1. the cuda-marked brute-force tests (tests/test_extract_cuda.py: tables on CUDA against a brute
#    force over the same CUDA activations);
# 2. how far CUDA's ResNet-50 layer4 activations are from the CPU's (benchmarks/cuda_vs_cpu.py);
# 3. bench_extract.py --device cuda: ResNet-50 layer4, N = 2,000, batch 64, raw and upsampled
#    bases, one table (forward-only against extraction, alternating rounds, medians).
#
# It uses the machine's own python3 (torch, torchvision, numpy, pyarrow, pillow, pytest; nothing
# is installed). pytest runs with --noconftest: tests/conftest.py imports the CLI and the
# warehouse's packages (duckdb, polars), which the extraction tests do not need. Each step has a
# time limit, so a slow step cannot eat the others'; the exit status is non-zero if any failed.
# The log is written to $OUT/device_check.log when OUT is set, else /tmp/device_check.log.
# Settings: PYTHON, N, BATCH, WORKERS, REPEAT (environment variables).

set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
n=${N:-2000}
batch=${BATCH:-64}
workers=${WORKERS:-8}
repeat=${REPEAT:-2}
log="${OUT:-/tmp}/device_check.log"
failed=0

step() {
    local limit=$1
    shift
    echo "== $* (limit ${limit} s)"
    local tic=$SECONDS
    if ! timeout "$limit" "$@"; then
        echo "== FAILED or timed out: $*"
        failed=1
    fi
    echo "== $((SECONDS - tic)) s"
}

exec > >(tee "$log") 2>&1
date -u
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
nproc
"$py" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision',
torchvision.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
step 90 "$py" -m pytest --noconftest -p no:cacheprovider -q -m cuda tests/test_extract_cuda.py
step 40 "$py" benchmarks/cuda_vs_cpu.py
step 210 "$py" benchmarks/bench_extract.py --device cuda --models resnet50 --layer layer4 \
    --basis raw,upsampled --n "$n" --batch "$batch" --workers "$workers" --repeat "$repeat" \
    --no-4n
date -u
exit "$failed"
