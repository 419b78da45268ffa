#!/usr/bin/env bash
# The GPU self-check, one command: does this machine run the CUDA fast path correctly, and how fast?
#   bash scripts/gpu_check.sh            # OUT=runs/gpu-check by default
# 1. tests/test_cuda.py: dry runs of both scripts on CUDA in each --precision, fp32 really strict float32,
#    one MW-Net step (JVP and double backward) and one L2RW step on CUDA equal to the CPU's in float64, no
#    host synchronisation in an iteration, CUDA batches equal to CPU batches for given crops and flips.
# 2. benchmarks/bench_step.py: ms per iteration of plain training, MW-Net (JVP, double backward) and the
#    original's way, ResNet-32 and WRN-28-10, in each precision; the rows go to $OUT/bench_step.json.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/gpu-check}"
mkdir -p "$OUT"
python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA device is visible; this check needs one')"
python3 -m pytest tests/test_cuda.py -v -p no:cacheprovider 2>&1 | tee "$OUT/test_cuda.log"
python3 benchmarks/bench_step.py --json "$OUT/bench_step.json" 2>&1 | tee "$OUT/bench_step.log"
