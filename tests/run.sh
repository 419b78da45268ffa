#!/usr/bin/env bash
# The test command of README.md: install what the tests need, lint, run the tests (CPU only), one pytest-xdist
# worker per core (tests marked with one xdist_group share a worker, and so their module's fixtures), the 15
# slowest tests named at the end.
#   bash tests/run.sh                 # in the current environment: torch as requirements.txt resolves it, the newest allowed
#   bash tests/run.sh --torch-floor   # the suite again in .venv-floor, on the oldest torch and torchvision declared
set -euo pipefail
cd "$(dirname "$0")/.."
# Real offline data for the Fashion-MNIST tests (skipped where the package cannot be installed).
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
    || echo "note: dataset-fashion-mnist could not be installed; its tests will be skipped"
fi
if [ "${1:-}" = "--torch-floor" ]; then
  shift
  [ -x .venv-floor/bin/python ] || python3 -m venv .venv-floor
  .venv-floor/bin/python -m pip install -q -r requirements-floor.txt -r requirements-dev.txt
  .venv-floor/bin/python -c "import torch, torchvision; print(f'the declared floor: torch {torch.__version__}, torchvision {torchvision.__version__}')"
  exec .venv-floor/bin/python -m pytest -n auto --dist loadgroup --durations=15 "$@"
fi
python3 -m pip install -q -r requirements-dev.txt
python3 -c "import torch, torchvision; print(f'torch {torch.__version__}, torchvision {torchvision.__version__}')"
python3 -m ruff check .
python3 -m ruff format --check .
python3 -m pytest -n auto --dist loadgroup --durations=15 "$@"
