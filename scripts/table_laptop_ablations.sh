#!/usr/bin/env bash
# The laptop protocol's ablations (docs/results-fashion-mnist.md, "Where the paper's claims hold"): one factor at a
# time toward the paper's regime, under uniform 60 %, flip2 40 % and flip 40 %; the rows and their flags are
# mwnet/tools/ablations.py's (python -m mwnet.tools.ablations lists them). The control rows are the laptop table's
# (scripts/table_laptop.sh), read from the same RUNS. ROWS, SETTINGS (comma-separated "type p") and SEEDS choose a part.
#   GPUS=cpu,cpu SEEDS="1 2 3" RUNS=results/laptop bash scripts/table_laptop_ablations.sh
#   python scripts/summarize.py --runs results/laptop --table fashionmnist_laptop_ablations
SEEDS="${SEEDS:-1 2 3}"
source "$(dirname "$0")/common.sh"
args=(--seeds "${SEEDS}")
[ -n "${ROWS:-}" ] && args+=(--rows "$ROWS")
[ -n "${SETTINGS:-}" ] && args+=(--settings "$SETTINGS")
while read -r folder flags; do
  emit MW-Net.py "$folder" $flags
done < <(cd "$ROOT" && "$PYTHON" -m mwnet.tools.ablations "${args[@]}")
run_all
