"""Run a list of training commands, one per GPU at a time, or write a SLURM job array for them.

Each line of COMMANDS is one run, with its run directory after --out. A run whose results.json
exists is skipped; one with a checkpoint but no results is continued with --resume.

    python scripts/runner.py commands.txt --gpus 0,1,2,3     # local: one run per GPU at a time
    python scripts/runner.py commands.txt --gpus cpu,cpu      # or on the CPU, two at a time
    python scripts/runner.py commands.txt --slurm jobs.sbatch # write a job array; submit with sbatch
The table scripts (scripts/table_*.sh) produce such lists and call this.
"""

import argparse
import os
import shlex
import subprocess
import sys
import time


def run_dir_of(command):
    words = shlex.split(command)
    if "--out" not in words or words.index("--out") + 1 >= len(words):
        raise SystemExit(f"runner: every command needs --out <run directory>: {command}")
    return words[words.index("--out") + 1]


def pending(commands):
    """The commands whose runs have no results yet."""
    return [c for c in commands if not os.path.exists(os.path.join(run_dir_of(c), "results.json"))]


def with_resume(command):
    """Continue a run that left a checkpoint instead of refusing its directory."""
    run_dir = run_dir_of(command)
    if os.path.exists(os.path.join(run_dir, "checkpoint.pt")):
        return f"{command} --resume {shlex.quote(run_dir)}"
    return command


def visible_gpus():
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())] or ["cpu"]
    except ImportError:
        return ["cpu"]


def run_local(commands, slots):
    """One subprocess per slot; each run's output goes to <run directory>.log."""
    free, running, failed = list(slots), {}, []
    queue = [with_resume(c) for c in commands]
    while queue or running:
        while queue and free:
            slot, command = free.pop(0), queue.pop(0)
            run_dir = run_dir_of(command)
            os.makedirs(os.path.dirname(os.path.abspath(run_dir)), exist_ok=True)
            env = dict(os.environ, CUDA_VISIBLE_DEVICES="" if slot == "cpu" else slot)
            log = open(run_dir.rstrip("/") + ".log", "w")
            print(f"[{slot}] {command}", flush=True)
            running[subprocess.Popen(command, shell=True, env=env, stdout=log, stderr=subprocess.STDOUT)] = (
                slot,
                command,
                log,
            )
        time.sleep(0.2)
        for proc in [p for p in running if p.poll() is not None]:
            slot, command, log = running.pop(proc)
            log.close()
            free.append(slot)
            if proc.returncode:
                failed.append(command)
                print(f"failed ({proc.returncode}), see {run_dir_of(command).rstrip('/')}.log: {command}", flush=True)
    return failed


SLURM_TEMPLATE = """#!/usr/bin/env bash
#SBATCH --job-name=mwnet
#SBATCH --array=0-{last}
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --output={logs}/%A_%a.log
# {count} runs from {source}; submit with: sbatch {script}
set -euo pipefail
cd {cwd}
command=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {commands})
out=$(python3 -c 'import shlex, sys; w = shlex.split(sys.argv[1]); print(w[w.index("--out") + 1])' "$command")
if [ -f "$out/results.json" ]; then exit 0; fi
if [ -f "$out/checkpoint.pt" ]; then command="$command --resume $out"; fi
eval "$command"
"""


def write_slurm(commands, path, source):
    """A job array over the pending commands, which it keeps in <path>.commands beside it."""
    listing = os.path.abspath(path) + ".commands"
    with open(listing, "w") as f:
        f.writelines(c + "\n" for c in commands)
    logs = os.path.abspath(path) + ".logs"
    os.makedirs(logs, exist_ok=True)
    text = SLURM_TEMPLATE.format(
        last=len(commands) - 1,
        logs=logs,
        count=len(commands),
        source=source,
        script=path,
        cwd=os.getcwd(),
        commands=listing,
    )
    with open(path, "w") as f:
        f.write(text)
    print(f"wrote {path}: a job array of {len(commands)} runs; submit with: sbatch {path}")


def main(argv=None):
    p = argparse.ArgumentParser(description="Run training commands one per GPU, or write a SLURM job array.")
    p.add_argument("commands", help="file with one command per line")
    p.add_argument(
        "--gpus", default=None, help="comma-separated GPU ids, or cpu (default: every visible GPU, else cpu)"
    )
    p.add_argument("--slurm", default=None, help="write a SLURM job-array script here instead of running")
    args = p.parse_args(argv)
    with open(args.commands) as f:
        commands = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    todo = pending(commands)
    print(f"{len(commands)} runs, {len(commands) - len(todo)} done, {len(todo)} to run", flush=True)
    if not todo:
        return 0
    if args.slurm:
        write_slurm(todo, args.slurm, args.commands)
        return 0
    slots = args.gpus.split(",") if args.gpus else visible_gpus()
    failed = run_local(todo, slots)
    print(f"{len(todo) - len(failed)} finished, {len(failed)} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
