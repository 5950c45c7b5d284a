#!/usr/bin/env bash
# The GPU report in one command, on a machine with an NVIDIA GPU (benchmarks/gpu_report.py
# says what it checks and measures): finds the GPU with nvidia-smi, installs minigan's test
# tools if they are missing and CuPy (with the CUDA libraries it needs, for the driver's CUDA
# major version) only if it is missing, then runs the report. Arguments go to gpu_report.py:
#
#   bash benchmarks/gpu_report.sh                 # writes gpu_report/report.json and report.md
#   bash benchmarks/gpu_report.sh --quick         # 3 timed steps a cell
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_report: error: nvidia-smi finds no NVIDIA GPU (no driver, or no device); the same checks" \
       "without a GPU: $PYTHON benchmarks/gpu_report.py --device-backend strict_cupy" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

if ! "$PYTHON" -c "import minigan, pytest, hypothesis" 2>/dev/null; then
  "$PYTHON" -m pip install --quiet -e . "pytest>=7" "hypothesis>=6.80"
fi

if ! "$PYTHON" -c "import cupy" 2>/dev/null; then
  cuda_major=$(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\).*/\1/p' | head -n 1 || true)
  case "${cuda_major:-12}" in
    13) wheel=cupy-cuda13x ;;
    *) wheel=cupy-cuda12x ;;
  esac
  echo "gpu_report: installing $wheel with its CUDA libraries (driver CUDA ${cuda_major:-unknown})" >&2
  "$PYTHON" -m pip install --quiet "${wheel}[ctk]"
fi

exec "$PYTHON" benchmarks/gpu_report.py "$@"
