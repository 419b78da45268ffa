"""Run a table's commands, one per GPU (or CPU slot) at a time, or write a SLURM job array for them.

Each line of COMMANDS is one run of MW-Net.py or train_WRN-28-10_Meta_PGC.py with its --out. What the
run directory holds decides (run_files.py, the same rules as the scripts'):
  nothing, or a start without a checkpoint    the run starts
  a stopped run of the same configuration     it is resumed (--resume)
  a finished run of the same configuration    skipped as done
  a run of another configuration              refused with the difference, left untouched
  a diverged run of the same configuration    reported, not run again
"The same configuration" is every flag but the free ones (run_files.FREE_FLAGS); a dry run differs; with
--dataset folder, also the same folder (its path) with the same image lists and labels as when the run was made.
Each run logs to <run directory>/train.log. At the end one line per state, the refused and failed runs
named; the exit code is 1 if any run was refused, failed or diverged, 130 after Ctrl-C.

    python scripts/runner.py commands.txt --gpus 0,1,2,3      # local: one run per GPU at a time
    python scripts/runner.py commands.txt --gpus cpu,cpu       # or on the CPU, two at a time
    python scripts/runner.py commands.txt --slurm jobs.sbatch  # write a job array; submit with sbatch
    python scripts/runner.py jobs.sbatch.commands --task 7     # what each array task runs (then execs)
The table scripts (scripts/table_*.sh) produce such lists and call this.
"""

import collections
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from mwnet.cli import Parser
from mwnet.data import folder
from mwnet.data.catalog import spec
from mwnet.engine.options import PRESETS, parse_args
from mwnet.errors import UserError
from mwnet.runs import run_files

# The folder that holds the package: array tasks import it from there, installed or not.
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

STOPPED = {128 + signal.SIGINT, 128 + signal.SIGTERM, 128 + signal.SIGUSR1}


@dataclass
class Task:
    command: str
    words: list
    run_dir: str
    action: str  # run, resume, done, refused, diverged
    reason: str = ""
    outcome: str = ""  # after running: finished, stopped, diverged, failed
    tail: collections.deque = field(default_factory=lambda: collections.deque(maxlen=20))


def plan_task(command):
    """What to do with one command, from what its run directory holds."""
    try:
        words = shlex.split(command)
    except ValueError as e:  # an unclosed quote
        return Task(command, [], "?", "refused", f"not a shell command line ({e})")
    scripts = [i for i, w in enumerate(words) if os.path.basename(w) in PRESETS]
    if not scripts:
        return Task(command, words, "?", "refused", f"not a command of {' or '.join(PRESETS)}")
    script = os.path.basename(words[scripts[0]])
    try:
        args = parse_args(script, words[scripts[0] + 1 :])
    except UserError as e:
        return Task(command, words, "?", "refused", f"bad flags: {e}")
    if not args.out or args.resume:
        return Task(command, words, args.out or "?", "refused", "every command needs --out and no --resume")
    if not run_files.is_ours(args.out):
        return Task(command, words, args.out, "refused", "holds files this project did not write; left untouched")
    try:
        run = run_files.read_run(args.out)
    except UserError as e:
        return Task(command, words, args.out, "refused", str(e))
    if not run_files.holds_run(run.status):
        return Task(command, words, args.out, "run")
    diffs = run_files.config_differences(run.config or {}, vars(args))
    if diffs:
        reason = f"holds a {run.status} run of another configuration ({'; '.join(diffs)})"
        return Task(command, words, args.out, "refused", reason)
    if spec(args.dataset).named_by_path:  # its --data_path is the dataset: the run must have been made on this one
        try:
            other = folder.differs((run.config or {}).get("folder"), args.data_path)
        except UserError as e:
            return Task(command, words, args.out, "refused", str(e))
        if other:
            return Task(command, words, args.out, "refused", f"holds a {run.status} run made on {other}")
    if run.status == "stopped":
        return Task(command, words + ["--resume", args.out], args.out, "resume")
    if run.status == "diverged":
        return Task(command, words, args.out, "diverged", "diverged before (see its results.json); not run again")
    return Task(command, words, args.out, "done")


def group(slots, per_run):
    """--gpus-per-run N: the slots taken N at a time, each group one run's (GPU ids joined by +, or cpu+cpu)."""
    if per_run == 1:
        return slots
    if len(slots) < per_run:
        raise UserError(f"--gpus-per-run {per_run} needs at least {per_run} slots in --gpus, got {len(slots)}")
    return ["+".join(slots[i : i + per_run]) for i in range(0, len(slots) - per_run + 1, per_run)]


def check_slots(text):
    """--gpus (GPUS=): each slot "cpu" or the id of a visible GPU. Anything else would hide every GPU from the
    run (CUDA_VISIBLE_DEVICES=abc) and let it train on the CPU without a word."""
    slots = [slot.strip() for slot in text.split(",")]
    count = None
    for slot in slots:
        if slot == "cpu":
            continue
        if not slot.isdigit():
            raise UserError(f"--gpus {text}: {slot!r} is neither a GPU id (0, 1, ...) nor cpu")
        if count is None:
            count = len([g for g in visible_gpus() if g != "cpu"])
        if int(slot) >= count:
            raise UserError(
                f"--gpus {text}: GPU {slot} is not visible here ({count} GPUs are); pass ids below {count}, or cpu"
            )
    return slots


def visible_gpus():
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())] or ["cpu"]
    except ImportError:
        return ["cpu"]


def _collect(proc, tail):
    for line in proc.stderr:
        tail.append(line.rstrip("\n"))


def with_torchrun(words, processes, nodes=1, endpoint=None):
    """The command run by torchrun on `processes` processes a machine: python -m torch.distributed.run ... SCRIPT."""
    at = next(i for i, w in enumerate(words) if os.path.basename(w) in PRESETS)
    if words[at - 2 : at] == ["-m", "mwnet"]:  # python -m mwnet MW-Net.py: torchrun runs the module
        at -= 2
    where = ["--standalone"] if nodes == 1 else ["--nnodes", str(nodes), "--rdzv_backend", "c10d"]
    if nodes > 1:
        where += ["--rdzv_endpoint", endpoint, "--rdzv_id", os.environ.get("SLURM_JOB_ID", "mwnet")]
    return [words[0], "-m", "torch.distributed.run", *where, "--nproc_per_node", str(processes), *words[at:]]


def _ending_with(parent):
    """preexec_fn of a run: on Linux, SIGTERM to the run when the runner ends, however it ends (SIGKILL by an
    out-of-memory killer or a scheduler's hard stop included), so that no run trains on unwatched and holds its
    lock against the next runner: the run writes a checkpoint at its iteration and exits, and the same sweep
    resumes it. (The runner's own SIGTERM or Ctrl-C stops its runs the same way, in order.) The C function is
    looked up here, before the fork; in the child it is one system call. Elsewhere: nothing."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1  # <linux/prctl.h>

    def setup():
        prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != parent:  # the runner ended between the fork and the call: no signal would come
            os.kill(os.getpid(), signal.SIGTERM)

    return setup


def launch(task, slot, cpu_slots=1):
    """Start a run on its slot: "cpu", a GPU id, or several ids (one run on several GPUs, through torchrun).
    A run on a CPU slot gets its share of the cores as threads (unless OMP_NUM_THREADS says otherwise), so that
    runs side by side do not fight over them."""
    gpus = [] if slot.startswith("cpu") else slot.split("+")
    env = dict(os.environ, CUDA_VISIBLE_DEVICES=",".join(gpus))
    if not gpus and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // cpu_slots))
    processes = len(gpus) if gpus else slot.count("cpu")
    words = with_torchrun(task.words, processes) if processes > 1 else task.words
    # Its own session: Ctrl-C reaches the runner only, which stops each run in order (a checkpoint first).
    proc = subprocess.Popen(
        words,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,  # the run's lines are in its train.log
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_ending_with(os.getpid()),
    )
    threading.Thread(target=_collect, args=(proc, task.tail), daemon=True).start()
    print(f"[{slot}] {task.action:<6} {task.run_dir}", flush=True)
    return proc


def run_local(tasks, slots):
    """Runs the tasks to run or resume; returns True if interrupted (Ctrl-C or SIGTERM)."""
    queue = [t for t in tasks if t.action in ("run", "resume")]
    free, running, stop, forwarded = list(slots), {}, [], 0
    handler = lambda signum, frame: stop.append(signum)  # noqa: E731
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while queue or running:
            if len(stop) > forwarded:
                print("runner: stopping; each run writes a checkpoint at its iteration, then exits", flush=True)
                queue.clear()
                for proc in running:  # SIGTERM first (never ignored); a second Ctrl-C stops the runs at once
                    proc.send_signal(signal.SIGTERM if not forwarded else signal.SIGINT)
                forwarded = len(stop)
            while queue and free:
                slot = free.pop(0)
                task = queue.pop(0)
                running[launch(task, slot, sum(s.count("cpu") for s in slots))] = (slot, task)
            time.sleep(0.1)
            for proc in [p for p in running if p.poll() is not None]:
                slot, task = running.pop(proc)
                free.append(slot)
                proc.wait()
                code = proc.returncode
                stopped = code in STOPPED or stop and run_files.status(task.run_dir) == "stopped"  # torchrun: exit 1
                task.outcome = {0: "finished", 3: "diverged"}.get(code, "stopped" if stopped else "failed")
                task.reason = f"exit {code}: {task.tail[-1] if task.tail else '(no output)'}" if code else ""
                print(f"[{slot}] {task.outcome:<8} {task.run_dir}", flush=True)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    return bool(stop)


def summary(tasks):
    """One line per state, then the refused, failed and diverged runs with their reason; the exit code."""
    names = {"done": "skipped (done)", "run": "to run", "resume": "to resume"}
    states = collections.Counter(t.outcome or names.get(t.action, t.action) for t in tasks)
    order = ["finished", "skipped (done)", "stopped", "refused", "failed", "diverged", "to run", "to resume"]
    counts = ", ".join(f"{states[s]} {s}" for s in order if states[s])
    print(f"runner: {len(tasks)} runs: {counts}", flush=True)
    bad = [t for t in tasks if t.action in ("refused", "diverged") or t.outcome in ("failed", "diverged")]
    for t in bad:
        print(f"  {t.outcome or t.action:<8} {t.run_dir}: {t.reason}", flush=True)
    return 1 if bad else 0


SLURM_TEMPLATE = """#!/usr/bin/env bash
#SBATCH --job-name={name}
#SBATCH --array=0-{last}%{max_parallel}
#SBATCH --gres=gpu:{gpus}
#SBATCH --nodes={nodes}
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task={cpus}
#SBATCH --mem={mem}
#SBATCH --time={time}
{optional}#SBATCH --requeue
#SBATCH --signal=B:USR1@300
#SBATCH --output={logs}/%A_%a.log
# {count} runs, one per array task: task i runs line i+1 of {commands}
# (scripts/runner.py --task i decides from the run directory: start, resume, skip or refuse, then runs it).
# Each run logs to <run directory>/train.log, appended on every resume; {logs}/ holds SLURM's own output.
# 300 s before the time limit SLURM sends USR1: the run writes a checkpoint at its current iteration and
# exits, and the task requeues itself to continue it. SIGTERM (preemption) also checkpoints first.
# {gpus} GPUs on each of {nodes} nodes per run: srun starts the runner once a node, which starts torchrun there
# (the rendezvous at the first node); a run of several processes is stopped with SIGTERM, which torchrun
# passes on to them.
# Prepare the data once before submitting (load_corrupted_data.py --download). Submit: sbatch {script}
set -uo pipefail
cd {cwd}
export MWNET_RDZV="$(scontrol show hostnames "${{SLURM_JOB_NODELIST:-localhost}}" 2>/dev/null | head -n 1):29500"
requeue=0
{launcher}PYTHONPATH={package_parent}${{PYTHONPATH:+:$PYTHONPATH}} {python} -m mwnet.tools.runner {commands} --task "$SLURM_ARRAY_TASK_ID" --gpus-per-run {gpus} --nodes-per-run {nodes} &
pid=$!
trap 'requeue=1; kill -{stop} "$pid" 2>/dev/null' USR1
trap 'kill -TERM "$pid" 2>/dev/null' TERM
wait "$pid"
rc=$?
while kill -0 "$pid" 2>/dev/null; do
  wait "$pid"
  rc=$?
done
if [ "$rc" -eq 138 ] || [ "$requeue" -eq 1 ]; then
  scontrol requeue "${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}"
fi
exit "$rc"
"""


def write_slurm(tasks, path, opts):
    """A job array over the tasks to run or resume; their commands go to <path>.commands beside it."""
    todo = [t for t in tasks if t.action in ("run", "resume")]
    if not todo:
        print(f"nothing to run: {path} not written", flush=True)
        return
    listing = os.path.abspath(path) + ".commands"
    logs = os.path.abspath(path) + ".logs"
    run_files.write_text_atomic(listing, "".join(t.command + "\n" for t in todo))
    os.makedirs(logs, exist_ok=True)
    optional = "".join(
        f"#SBATCH --{k}={v}\n" for k, v in (("partition", opts.partition), ("account", opts.account)) if v
    )
    text = SLURM_TEMPLATE.format(
        name=os.path.splitext(os.path.basename(path))[0],
        last=len(todo) - 1,
        max_parallel=opts.max_parallel,
        gpus=opts.gpus_per_run,
        nodes=opts.nodes_per_run,
        launcher="srun " if opts.nodes_per_run > 1 else "",
        stop="TERM" if opts.gpus_per_run * opts.nodes_per_run > 1 else "USR1",
        cpus=opts.cpus,
        mem=opts.mem,
        time=opts.time,
        optional=optional,
        logs=shlex.quote(logs),
        count=len(todo),
        commands=shlex.quote(listing),
        script=shlex.quote(path),
        cwd=shlex.quote(os.getcwd()),
        python=shlex.quote(sys.executable),
        package_parent=shlex.quote(PACKAGE_PARENT),
    )
    run_files.write_text_atomic(path, text)
    print(f"wrote {path}: a job array of {len(todo)} runs; submit with: sbatch {path}", flush=True)


def run_task(commands, index, processes=1, nodes=1):
    """One array task: decide from the run directory, then become the training process (exec); torchrun's
    when the run has several processes (on this node, and the others of the task)."""
    if not 0 <= index < len(commands):
        print(f"runner: no task {index} (the list has {len(commands)})", file=sys.stderr)
        return 2
    task = plan_task(commands[index])
    print(f"task {index}: {task.run_dir}: {task.action}{': ' + task.reason if task.reason else ''}", flush=True)
    if task.action == "done":
        return 0
    if task.action not in ("run", "resume"):
        return 2
    words = task.words
    if processes * nodes > 1:
        words = with_torchrun(words, processes, nodes, os.environ.get("MWNET_RDZV"))
    os.execvp(words[0], words)


def main(argv=None):
    env = os.environ.get
    p = Parser(description="Run training commands one per GPU, or write a SLURM job array.")
    p.add_argument("commands", help="file with one command per line")
    p.add_argument(
        "--gpus", default=None, help="comma-separated GPU ids, or cpu (default: every visible GPU, else cpu)"
    )
    p.add_argument("--slurm", default=None, help="write a SLURM job-array script here instead of running")
    p.add_argument("--task", type=int, default=None, help="run line TASK+1 of COMMANDS (what each array task does)")
    p.add_argument(
        "--gpus-per-run",
        type=int,
        default=int(env("GPUS_PER_RUN", "1")),
        help="GPUs (or cpu slots) of one run, through torchrun (env GPUS_PER_RUN; default 1)",
    )
    p.add_argument(
        "--nodes-per-run",
        type=int,
        default=int(env("NODES_PER_RUN", "1")),
        help="SLURM: nodes of one run, each with --gpus-per-run GPUs (env NODES_PER_RUN; default 1)",
    )
    p.add_argument(
        "--time", default=env("JOB_TIME", "12:00:00"), help="SLURM time limit per task (env JOB_TIME; default 12:00:00)"
    )
    p.add_argument("--mem", default=env("JOB_MEM", "16G"), help="SLURM memory per task (env JOB_MEM; default 16G)")
    p.add_argument("--cpus", default=env("JOB_CPUS", "4"), help="SLURM CPUs per task (env JOB_CPUS; default 4)")
    p.add_argument(
        "--partition", default=env("JOB_PARTITION"), help="SLURM partition (env JOB_PARTITION; default: none)"
    )
    p.add_argument("--account", default=env("JOB_ACCOUNT"), help="SLURM account (env JOB_ACCOUNT; default: none)")
    p.add_argument(
        "--max-parallel",
        default=env("JOB_MAX_PARALLEL", "16"),
        help="array tasks at once (env JOB_MAX_PARALLEL; default 16)",
    )
    args = p.parse_args(argv)
    try:
        with open(args.commands, encoding="utf-8") as f:
            commands = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    except OSError as e:
        print(f"runner: cannot read {args.commands} ({e.strerror})", file=sys.stderr)
        return 2
    except UnicodeDecodeError:
        print(f"runner: {args.commands} is not a text file of commands, one a line", file=sys.stderr)
        return 2
    if not commands:
        print(f"runner: {args.commands} holds no command; write one command a line", file=sys.stderr)
        return 2
    if args.task is not None:
        return run_task(commands, args.task, args.gpus_per_run, args.nodes_per_run)
    try:
        if args.gpus_per_run < 1 or args.nodes_per_run < 1:
            raise UserError("--gpus-per-run and --nodes-per-run must be at least 1")
        slots = None
        if not args.slurm:  # local slots, taken --gpus-per-run at a time
            slots = group(check_slots(args.gpus) if args.gpus is not None else visible_gpus(), args.gpus_per_run)
        if args.slurm and not os.path.isdir(os.path.dirname(os.path.abspath(args.slurm))):
            raise UserError(f"--slurm {args.slurm}: its folder does not exist; create it or choose another path")
        tasks = [plan_task(c) for c in commands]
        if args.slurm:
            write_slurm(tasks, args.slurm, args)
            return summary(tasks)
    except (UserError, OSError) as e:
        print(
            f"runner: {e if isinstance(e, UserError) else f'cannot write {e.filename} ({e.strerror})'}", file=sys.stderr
        )
        return 2
    interrupted = run_local(tasks, slots)
    code = summary(tasks)
    return 130 if interrupted else code


if __name__ == "__main__":
    sys.exit(main())
