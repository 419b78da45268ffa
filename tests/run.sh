#!/usr/bin/env bash
# The test command of README.md: install what the tests need, lint, run the tests (CPU only).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -r requirements-dev.txt
# Real offline data for the Fashion-MNIST tests (skipped where the package cannot be installed).
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
    || echo "note: dataset-fashion-mnist could not be installed; its tests will be skipped"
fi
python3 -m ruff check .
python3 -m ruff format --check .
python3 -m pytest "$@"
