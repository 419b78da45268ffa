# Shared by the table scripts: collect one command per run, then hand the list to the runner.
# Environment (all optional):
#   RUNS=runs        root of the run directories: $RUNS/<table>/<dataset>/<setting>/<row>/seed<k>
#                    (dry runs: $RUNS/dry/<table>/..., apart from real ones)
#   DATA=./data      --data_path of every run
#   SEEDS="1 2 3 4 5"
#   DATASETS="cifar10 cifar100"
#   GPUS=0,1,...     GPU ids to run on, one run per GPU at a time (default: every visible GPU, else cpu)
#   GPUS_PER_RUN=N   one run on N GPUs through torchrun (local slots, or SLURM's --gres), NODES_PER_RUN=M on M
#                    nodes with SLURM
#   SLURM=FILE       write a SLURM job-array script to FILE instead of running; JOB_TIME, JOB_MEM, JOB_CPUS,
#                    JOB_PARTITION, JOB_ACCOUNT, JOB_MAX_PARALLEL set its resources (scripts/runner.py --help)
#   PRINT=1          only print the commands
#   DRY_RUN=1        every cell a --dry_run
#   EXTRA="..."      flags added to every command
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS="${RUNS:-runs}"
DATA="${DATA:-./data}"
SEEDS="${SEEDS:-1 2 3 4 5}"
DATASETS="${DATASETS:-cifar10 cifar100}"
PYTHON="${PYTHON:-python3}"
if [ -n "${DRY_RUN:-}" ]; then RUNS="$RUNS/dry"; fi
COMMANDS="$(mktemp)"
trap 'rm -f "$COMMANDS"' EXIT

# emit SCRIPT RUN_DIR FLAGS...: one run of SCRIPT writing into RUN_DIR.
emit() {
  local script="$1" out="$2"
  shift 2
  local cmd
  # Paths quoted (a folder name with a space stays one argument); the runner splits the line as a shell would.
  cmd="$(printf '%q ' "$PYTHON" "$ROOT/$script" --data_path "$DATA" --out "$RUNS/$out")$* ${EXTRA:-}"
  if [ -n "${DRY_RUN:-}" ]; then cmd="$cmd --dry_run"; fi
  echo "$cmd" >>"$COMMANDS"
}

run_all() {
  if [ -n "${PRINT:-}" ]; then
    cat "$COMMANDS"
  elif [ -n "${SLURM:-}" ]; then
    "$PYTHON" "$ROOT/scripts/runner.py" "$COMMANDS" --slurm "$SLURM"
  else
    "$PYTHON" "$ROOT/scripts/runner.py" "$COMMANDS" ${GPUS:+--gpus "$GPUS"}
  fi
}
