#!/usr/bin/env bash
# The six classic ablations at scale=gpu (conf/budget/<study>/gpu.yaml), 3 seeds each, as packed sweeps on one GPU; prints the
# total wall time. All options are benchmarks/classic_suite.py's (--jobs, --seeds, --out, --smoke, overrides).
#   bash benchmarks/classic_suite.sh                # on the GPU machine
#   bash benchmarks/classic_suite.sh --smoke        # a CPU check with tiny sizes
set -euo pipefail
exec "${PYTHON:-python}" "$(dirname "$0")/classic_suite.py" "$@"
