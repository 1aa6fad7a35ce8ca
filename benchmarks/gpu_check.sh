#!/usr/bin/env bash
# Issue 11's checks on a GPU machine, in one go: the CUDA-only tests, the throughput ratios (with where the framework
# waits for the GPU), packed vs one-by-one sweeps, then (unless --no-suite) the classic suite's total wall time.
#   bash benchmarks/gpu_check.sh [--no-suite]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
"$PY" -m pytest -q -n 0 -p no:cacheprovider -m "" tests/data/test_placement.py tests/test_compile.py \
    tests/diagnostics/test_guard_deferred.py
"$PY" benchmarks/throughput.py --device cuda --count-syncs
"$PY" benchmarks/sweep_packing.py --device cuda
if [[ "${1:-}" != "--no-suite" ]]; then
    bash benchmarks/classic_suite.sh
fi
