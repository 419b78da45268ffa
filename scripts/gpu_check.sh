#!/usr/bin/env bash
# The GPU self-check, one command (scripts/gpu_check.py says what it checks): run it first on a GPU.
#   bash scripts/gpu_check.sh                               # the interpreter: $PYTHON, default python3
#   PYTHON=.venv/bin/python OUT=runs/gpu-check bash scripts/gpu_check.sh
# Without a GPU it says so in one line and exits 2.
set -uo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" scripts/gpu_check.py
