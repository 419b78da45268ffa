"""The one training loop behind MW-Net.py and train_WRN-28-10_Meta_PGC.py.

main(script, argv) parses the flags (options.py), settles the run directory (a fresh start, or --resume
with the run's own flags), builds the parts (components.py) and runs one loop: each iteration the
learning rate from Plan.lr_at, a training batch, a meta batch, and one step of the chosen method
(meta_step.py); at each evaluation one JSON line of metrics, the best model and an atomic checkpoint
(run_files.py), and one line on screen and in train.log (reporting.py). Exit codes: errors.py.
"""

import math
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mwnet.data.catalog import NUM_CLASSES
from mwnet.engine import distributed
from mwnet.engine.components import (
    autocast,
    build_data,
    build_learner,
    environment,
    load_test,
    pick_device,
    set_numerics,
)
from mwnet.engine.distributed import World
from mwnet.engine.loop_state import Progress, Tally, checkpoint_state, restore
from mwnet.engine.options import args_from_stored, given_flags, parse_args
from mwnet.errors import EXIT_DIVERGED, EXIT_OK, EXIT_USER, UserError
from mwnet.method.meta_step import erm_step, l2rw_step, mwnet_step
from mwnet.models import build_model
from mwnet.runs.reporting import Reporter, TensorBoard, banner, evaluation_line, training_line
from mwnet.runs.run_files import (
    CHECKPOINT,
    CONFIG,
    FREE_FLAGS,
    LOG,
    TENSORBOARD,
    ReadOnlyRunDir,
    RunDir,
    config_differences,
    default_run_name,
    is_ours,
    model_file,
)

LOSS_GRID = [i / 10 for i in range(101)]  # losses at which the meta-weight-net's curve is recorded
MAX_ITERATIONS = 10**9  # a longer run is a typo (--epochs 1e308), not a plan: refused before anything is written


@dataclass
class Plan:
    """How long, at what learning rate, and when to evaluate, in iterations."""

    steps_per_epoch: int
    total: int
    eval_period: int
    unit: str
    lr: float
    milestones: list
    images_per_step: float
    real_ahead: float = 0

    def lr_at(self, step):
        """get_lr: the initial lr times 0.1 per milestone reached, milestones in epochs or iterations.
        A milestone of m epochs is reached at iteration round(m * steps_per_epoch): for an integer m
        that is the original's epoch >= m; a fractional m (a shortened schedule) lands on the nearest one."""
        per = self.steps_per_epoch if self.unit == "epoch" else 1
        return self.lr * 0.1 ** sum(step >= round(m * per) for m in self.milestones)

    def real_lr_at(self, step):
        """The real optimiser's lr: the same schedule, `real_ahead` epochs or iterations ahead (the
        class-imbalance code called it with epoch + 1); by default one schedule for both steps."""
        per = self.steps_per_epoch if self.unit == "epoch" else 1
        return self.lr_at(step + round(self.real_ahead * per))

    def lr_changes(self, start, stop):
        """Whether either step's lr changes at an iteration in [start, stop) (a milestone lies there)."""
        before = (self.lr_at(start - 1), self.real_lr_at(start - 1))
        return any((self.lr_at(s), self.real_lr_at(s)) != before for s in range(start, stop))

    def late_milestones(self):
        """The milestones at or after the end: their lr drop never happens."""
        per = self.steps_per_epoch if self.unit == "epoch" else 1
        return [m for m in self.milestones if round(m * per) >= self.total]

    def is_eval(self, step):
        done = step + 1
        return done % self.eval_period == 0 or done == self.total

    def epoch(self, step):
        return (step + 1) / self.steps_per_epoch if self.unit == "epoch" else (step + 1) * self.images_per_step


def make_plan(args, batches_per_epoch, n_train):
    spe = 2 if args.dry_run else batches_per_epoch
    length = float(2 if args.dry_run else args.epochs) * spe if args.unit == "epoch" else float(args.iters)
    if length > MAX_ITERATIONS:
        given = f"--epochs {args.epochs:g}" if args.unit == "epoch" else f"--iters {args.iters}"
        raise UserError(f"{given} means more than {MAX_ITERATIONS:.0e} iterations; pass a shorter run")
    if args.unit == "epoch":
        total = round((2 if args.dry_run else args.epochs) * spe)
        period = max(1, round(args.eval_every * spe))
        if total < 1:
            raise UserError(f"--epochs {args.epochs} is less than one iteration of {spe} per epoch; pass more epochs")
    else:
        total = 4 if args.dry_run else args.iters
        period = 2 if args.dry_run else args.eval_every
    images = args.batch_size / max(n_train, 1)
    plan = Plan(spe, total, period, args.unit, args.lr, list(args.milestones), images, args.real_lr_ahead)
    late = plan.late_milestones()
    if late and late == plan.milestones and not args.dry_run:  # a dry run's banner says so instead
        end = f"{args.unit}s {args.epochs if args.unit == 'epoch' else args.iters}"
        raise UserError(
            f"--milestones {' '.join(f'{m:g}' for m in late)} all fall at or after the run's end ({end}), so the lr would never drop; pass milestones within the run, or --milestones with no value for a constant lr"
        )
    return plan


def checkpoint_due(plan, done, seconds_since, every_minutes):
    """At the evaluation after `done` iterations: write a checkpoint? At every evaluation with --checkpoint_every 0;
    else at the end, before an lr milestone (the lr changes before the next evaluation), and once
    --checkpoint_every minutes have passed since the last one. Signals write their own."""
    if every_minutes == 0 or done == plan.total or seconds_since >= 60 * every_minutes:
        return True
    return plan.lr_changes(done, min(done + plan.eval_period, plan.total))


@torch.no_grad()
def evaluate(model, test, world=None):
    """Test loss (the true per-sample mean) and accuracy in %, in eval mode; shared out over the processes."""
    world = world or World()
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=test.device)
    correct = torch.zeros((), dtype=torch.long, device=test.device)
    for x, y, _ in test.in_order(part=(world.rank, world.size)):
        logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
        correct += (logits.argmax(1) == y).sum()
    world.sum_(loss_sum)
    world.sum_(correct)
    model.train()
    n = len(test.labels)
    return loss_sum.item() / n, 100.0 * correct.item() / n


@torch.no_grad()
def vnet_curve(vnet, device):
    if vnet is None:
        return None
    grid = torch.tensor(LOSS_GRID, device=device).unsqueeze(1)
    return [round(v, 6) for v in vnet(grid).squeeze(1).tolist()]


def one_step(args, learner, data, x, y, lr, reduce=None):
    m = learner
    if args.method == "erm":
        return erm_step(m.model, m.optimizer, x, y, reduce=reduce)
    mx, my, _ = data.meta.next_batch()
    if args.method == "l2rw":
        return l2rw_step(m.model, m.optimizer, x, y, mx, my, lr, meta_grad=args.meta_grad, reduce=reduce)
    return mwnet_step(
        m.model,
        m.vnet,
        m.optimizer,
        m.vnet_optimizer,
        x,
        y,
        mx,
        my,
        lr,
        normalize=args.normalize_weights,
        meta_grad=args.meta_grad,
        detach_vnet_input=args.detach_vnet_input,
        reduce=reduce,
    )


class StopSignals:
    """SIGINT, SIGTERM, SIGUSR1 during the loop: the iteration finishes, a checkpoint is written at it, and
    the run exits with 128 + the signal. A second SIGINT stops at once (the last checkpoint stays)."""

    def __enter__(self):
        self.received = None
        wanted = [signal.SIGTERM, signal.SIGUSR1]
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # a background job keeps ignoring Ctrl-C
            wanted.append(signal.SIGINT)
        self.previous = {s: signal.signal(s, self._handle) for s in wanted}
        return self

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def _handle(self, signum, frame):
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Session:
    """What the loop works with: the flags, the schedule, the run directory, the data and modules, where
    the loop stands, and where it reports."""

    args: object
    plan: Plan
    run_dir: RunDir
    config: dict
    data: object
    learner: object
    progress: Progress
    tally: Tally
    report: Reporter
    world: World
    checkpointed_at: int | None = None  # the iteration of the last checkpoint written or resumed from
    checkpoint_time: float = 0.0  # when (time.perf_counter) it was written, or the session started
    tb: TensorBoard | None = None

    def checkpoint(self):
        self.run_dir.save_checkpoint(checkpoint_state(self.config, self.progress, self.learner, self.data, self.tally))
        self.checkpointed_at, self.checkpoint_time = self.progress.step, time.perf_counter()


def train(s, signals):
    """The loop. Returns ("finished", None), ("diverged", (first, last iteration of the window)) or
    ("stopped", signal number) after writing a checkpoint at the current iteration."""
    args, plan, data, learner, progress = s.args, s.plan, s.data, s.learner, s.progress
    device = data.test.device
    window = progress.records[-1]["iteration"] if progress.records else 0
    mark = time.perf_counter()
    world = s.world
    for step in range(progress.step, plan.total):
        if world.size > 1:  # every process stops at the same iteration
            signals.received = world.agree(signals.received or 0) or None
        if signals.received is not None:
            break
        lr, real_lr = plan.lr_at(step), plan.real_lr_at(step)
        for group in learner.optimizer.param_groups:
            group["lr"] = real_lr
        x, y, idx = data.train.next_batch()
        with autocast(args.precision, device):
            out = one_step(args, learner, data, x, y, lr, world.reduce)
        out, idx = world.gather_batch(out, idx)  # every process records the whole batch
        s.tally.add(out, data.is_noisy[idx], data.is_clean[idx])
        progress.last_loss[idx], progress.last_weight[idx] = out["losses"].float(), out["weights"].float()
        progress.step = step + 1
        s.report.advance(plan.epoch(step), real_lr, progress.last_acc, progress.best_acc)
        asked = args.print_freq and progress.step % args.print_freq == 0
        if (asked or s.report.progress_due()) and not plan.is_eval(step):  # one host sync per line
            eta = s.report.eta(progress.step, plan.total)
            s.report.line(training_line(progress.step, plan.total, plan.epoch(step), real_lr, s.tally.read()[0], eta))
        if not plan.is_eval(step):
            continue
        sync(device)
        progress.train_seconds += time.perf_counter() - mark
        world.share_buffers(learner.model)
        with autocast(args.precision, device):
            test_loss, test_acc = evaluate(learner.model, data.test, world)
        summary, finite = s.tally.read()
        progress.elapsed += time.perf_counter() - mark
        if not (finite and math.isfinite(test_loss)):
            return "diverged", (window, step + 1)
        record = {"iteration": step + 1, "epoch": round(plan.epoch(step), 6), "lr": real_lr, **summary}
        evaluated(s, record, test_loss, test_acc)
        window, mark = step + 1, time.perf_counter()
    else:
        return "finished", None
    sync(device)
    now = time.perf_counter()
    progress.train_seconds += now - mark
    progress.elapsed += now - mark
    world.share_buffers(learner.model)
    if progress.step != s.checkpointed_at:
        s.checkpoint()
    return "stopped", signals.received


def evaluated(s, record, test_loss, test_acc):
    """After a finite evaluation: the best model, the checkpoint when due (checkpoint_due), then the metrics
    line. metrics.jsonl may run ahead of the checkpoint, which holds every line up to it: a resume drops
    the lines past it and computes them again, to the same values."""
    progress, learner = s.progress, s.learner
    is_best = progress.best_acc is None or test_acc > progress.best_acc
    if is_best:
        progress.best_acc, progress.best_step = test_acc, record["iteration"]
    progress.last_acc = test_acc
    record.update(test_loss=test_loss, test_acc=test_acc, best_acc=progress.best_acc)
    record.update(vnet_curve=vnet_curve(learner.vnet, s.data.test.device), elapsed=round(progress.elapsed, 3))
    progress.records.append(record)
    if is_best:
        vnet = None if learner.vnet is None else learner.vnet.state_dict()
        best = {
            "config": s.config,
            "step": record["iteration"],
            "test_acc": test_acc,
            "model": learner.model.state_dict(),
        }
        s.run_dir.save_best({**best, "vnet": vnet})
    s.tally.reset()
    since = time.perf_counter() - s.checkpoint_time
    if checkpoint_due(s.plan, record["iteration"], since, s.args.checkpoint_every):
        s.checkpoint()
    s.run_dir.append_metrics(record)
    s.report.line(evaluation_line(record, s.plan.total, s.report.eta(progress.step, s.plan.total)))
    if s.tb is not None:
        s.tb.evaluation(record, LOSS_GRID, progress.last_weight, s.data.is_noisy)


def start(args, config, run_dir, data, learner, device, seeds):
    """Under the lock: a fresh start (writes config and split) or the checkpoint's state. None: nothing to do."""
    progress, tally = Progress.new(len(data.train_idx), device), Tally(device, meta=args.method != "erm")
    current = run_dir.status() if args.resume else None
    if current == "finished":
        print(f"{run_dir.path} has finished; nothing to continue (results in {run_dir.file('results.json')})")
        return None
    if current == "diverged":
        raise UserError(
            f"{run_dir.path} diverged (see its results.json); nothing to continue: start a new run with other flags"
        )
    recorded = {
        "seeds": seeds,
        "noise_rate": data.noise_rate,
        "vnet_loss_grid": LOSS_GRID,
        "data_fingerprint": data.fingerprint,
        "noise_source": data.noise_source,
        "model_source": learner.source,
        "environment": environment(device),
    }
    if current != "stopped":
        run_dir.prepare_fresh()  # refuses a directory that holds a run; a resume without checkpoint starts afresh
        run_dir.write_config({**config, **recorded})
        run_dir.save_split(data.meta_idx, data.train_idx, data.clean_labels, data.noisy_labels)
        return progress, tally, None
    state = run_dir.load_checkpoint()
    if state["device_type"] != device.type:
        # The batch generators' states belong to their device; so does bit-for-bit continuation.
        raise UserError(
            f"{run_dir.file(CHECKPOINT)} was made on {state['device_type']}; resume it with --device {state['device_type']}"
        )
    ran_with, now = state["config"].get("world_size", 1), config["world_size"]
    if ran_with != now:  # another split of each batch, another BatchNorm: not an exact continuation
        how = (
            "in one process (without torchrun)"
            if ran_with == 1
            else f"with torchrun --nproc_per_node {ran_with} (on one machine)"
        )
        raise UserError(f"{run_dir.path} ran in {ran_with} processes, not {now}; resume it {how}")
    diffs = config_differences(state["config"], config)
    if diffs:
        raise UserError(
            f"{run_dir.file(CHECKPOINT)} and {run_dir.file(CONFIG)} disagree ({'; '.join(diffs)}); the directory is damaged"
        )
    started_with = state.get("data_fingerprint")  # absent from checkpoints made before it was recorded
    if started_with not in (None, data.fingerprint) and not args.accept_other_data:
        raise UserError(
            f"the data under --data_path {args.data_path} is not the data {run_dir.path} started with (other images or labels); pass the run's own data, or --accept_other_data to continue with these"
        )
    run_dir.remove_temporaries()
    progress = restore(state, learner, data, tally)
    run_dir.rewrite_metrics(progress.records)
    if run_dir.read_config() is None:  # config.json was lost; the checkpoint holds the run's flags
        run_dir.write_config({**state["config"], **recorded})
    return progress, tally, progress.step


def run(args):
    """One run: of this process alone, or (torchrun) of every process of it, process 0 writing and speaking."""
    world = distributed.start(args.device)
    try:
        return run_in(world, args)
    except UserError:
        if world.writer:
            raise
        return EXIT_USER  # process 0 says it
    finally:
        world.close()


def prepare(world, args, run_dir):
    """Everything before the lock, on every process; any process's failure stops them all, with one line."""
    error = parts = None
    try:
        if world.size > 1 and not args.detach_vnet_input:
            raise UserError("--no-detach_vnet_input runs in one process only; start it without torchrun")
        device = pick_device(args.device, world.local_rank)
        set_numerics(args.precision, args.deterministic)
        run_dir.check_usable()
        seeds = [int(s) for s in np.random.SeedSequence(args.seed).generate_state(3)]  # model, train, meta batches
        data = build_data(args, device, seeds)  # reads, checks sizes; nothing written yet
        for loader in (data.train, data.meta):
            if loader is not None:
                loader.part = (world.rank, world.size)  # the same global batch, this process's slice of it
        plan = make_plan(args, len(data.train), len(data.train_idx))
        learner = build_learner(args, data.num_classes, device, seeds[0])
        if args.pretrained and not (args.resume and run_dir.status() == "stopped"):  # a fresh start: its weights
            from mwnet.models.imagenet import load_pretrained

            learner.source = load_pretrained(learner.model, args.pretrained)
        parts = device, seeds, data, plan, learner
    except UserError as e:
        error = str(e)
    world.settle(error)
    world.check_same("flags", distributed.flags_digest(vars(args), FREE_FLAGS))
    world.check_same("code", distributed.code_digest() if world.size > 1 else None)
    world.check_same("data", parts[2].fingerprint)
    return parts


def run_in(world, args):
    run_dir = RunDir(args.out) if world.writer else ReadOnlyRunDir(args.out)
    device, seeds, data, plan, learner = prepare(world, args, run_dir)
    config = {**vars(args), "world_size": world.size}
    with run_dir.owned():
        started = error = None
        try:
            started = start(args, config, run_dir, data, learner, device, seeds)
        except UserError as e:
            error = str(e)
        world.settle(error)
        if started is None:
            return EXIT_OK
        progress, tally, resumed_at = started
        run_dir.claim()
        report = Reporter(run_dir.file(LOG) if world.writer else None)
        s = Session(args, plan, run_dir, config, data, learner, progress, tally, report, world)
        s.checkpointed_at, s.checkpoint_time = resumed_at, time.perf_counter()
        try:
            for line in banner(args, plan, data, device, run_dir.path, resumed_at, world.size):
                s.report.line(line)
            s.tb = TensorBoard(run_dir.file(TENSORBOARD)) if args.tensorboard and world.writer else None
            s.report.start(plan.total, progress.step, f"{args.method} {args.dataset}")
            with StopSignals() as signals:
                outcome, detail = train(s, signals)
            return finish(s, outcome, detail)
        except RuntimeError as e:
            if world.size == 1 or not distributed.lost(e):
                raise
            kept = (
                f"the checkpoint of iteration {s.checkpointed_at} is kept"
                if s.checkpointed_at
                else "no checkpoint was written"
            )
            error = UserError(
                f"another process of the run ended ({str(e).splitlines()[0][:100]}); {kept}: continue it with torchrun and --resume {run_dir.path}"
            )
            s.report.write_log(f"error: {error}\n")
            raise error from None
        except (UserError, KeyboardInterrupt) as e:
            s.report.write_log(f"error: {e or 'interrupted'}\n")
            raise
        except Exception:
            s.report.write_log(traceback.format_exc())
            raise
        finally:
            if s.tb is not None:
                s.tb.close()
            s.report.close()


def finish(s, outcome, detail):
    """The run's end: results.json and the exit code."""
    progress, data, run_dir = s.progress, s.data, s.run_dir
    results = {
        "status": outcome,
        "best_test_acc": progress.best_acc,
        "best_iteration": progress.best_step,
        "last_test_acc": progress.last_acc,
        "noise_rate": data.noise_rate,
        "iterations": s.plan.total,
        "iters_per_sec": progress.step / progress.train_seconds if progress.train_seconds else None,
        "wall_time": progress.elapsed,
        "device": str(data.test.device),
        "precision": s.args.precision,
    }
    if outcome == "stopped":
        name = signal.Signals(detail).name
        s.report.line(
            f"stopped by {name} at iteration {progress.step}; checkpoint written; continue with --resume {run_dir.path}",
            error=True,
        )
        return 128 + detail
    if outcome == "diverged":
        first, last = detail
        kept = (
            f"the checkpoint of iteration {s.checkpointed_at} is kept"
            if s.checkpointed_at
            else "no checkpoint was written"
        )
        run_dir.write_results({**results, "diverged_between": [first, last]})
        why = "a non-finite training loss, meta loss, weight or test loss"
        args = s.args
        hint = (
            f"--momentum {args.momentum:g} is 1 or more, which makes SGD grow without bound: pass one below 1"
            if args.momentum >= 1
            else "try a lower --lr"
        )
        s.report.line(
            f"{args.script}: diverged between iterations {first} and {last} ({why}); {kept}; {hint}", error=True
        )
        return EXIT_DIVERGED
    weights = progress.last_loss.cpu().numpy(), progress.last_weight.cpu().numpy()
    run_dir.save_weights(data.train_idx, data.clean_labels, data.noisy_labels, *weights)
    if s.learner.vnet is not None:
        run_dir.save_weighting_function(LOSS_GRID, progress.records[-1]["vnet_curve"])
    run_dir.write_results(results)
    best, last, where = progress.best_acc, progress.last_acc, run_dir.file("results.json")
    s.report.line(
        f"finished: best test accuracy {best:.2f}% (iteration {progress.best_step}), last {last:.2f}%; results in {where}"
    )
    return EXIT_OK


def resolve(script, args, argv):
    """A fresh run's directory, or a resumed run's flags: its own, stored, with only free flags given beside."""
    if not args.resume:
        args.out = args.out or os.path.join("runs", args.name or default_run_name(vars(args)))
        return args
    path = args.resume
    run_dir = path
    if os.path.isfile(path):
        if os.path.basename(path) != CHECKPOINT:
            raise UserError(
                f"--resume {path}: resume takes a run directory or its {CHECKPOINT}, not another file (a model_best.pt holds no optimiser or loader state: evaluate it with --evaluate)"
            )
        run_dir = os.path.dirname(path) or "."
    if not is_ours(run_dir):
        raise UserError(
            f"--resume {path}: {run_dir} is not a run directory of this project; pass the directory of a run"
        )
    stored = RunDir(run_dir).read_config()
    if stored is None and os.path.exists(os.path.join(run_dir, CHECKPOINT)):
        stored = RunDir(run_dir).load_checkpoint()["config"]  # config.json lost: the checkpoint holds the flags
    if stored is None:
        raise UserError(
            f"--resume {path}: no run there ({os.path.join(run_dir, CONFIG)} does not exist); start the run with its flags, without --resume"
        )
    given = given_flags(script, argv)
    if "out" in given and os.path.realpath(given["out"]) != os.path.realpath(run_dir):
        raise UserError(
            f"--out {given['out']} is not the resumed run's directory {run_dir}; leave --out out: a run is continued in its own directory"
        )
    given.update(resume=run_dir, out=run_dir)
    return args_from_stored(script, stored, given, run_dir)


def evaluate_checkpoint(script, args, argv):
    """--evaluate: the test loss and accuracy of a checkpoint or best model; nothing is written."""
    path, state = model_file(args.evaluate)
    given = {**given_flags(script, argv), "resume": ""}
    args = args_from_stored(script, state["config"], given, path)
    device = pick_device(args.device)
    set_numerics(args.precision, args.deterministic)
    test = load_test(args, device)
    model = build_model(args, NUM_CLASSES[args.dataset]).to(device, memory_format=torch.channels_last)
    model.load_state_dict(state["model"])
    with autocast(args.precision, device):
        loss, acc = evaluate(model, test)
    step = state["step"] if "step" in state else state["progress"]["step"]
    print(
        f"{path} (iteration {step}): test loss {loss:.4f}, test accuracy {acc:.2f}% on {len(test.labels)} test images"
    )
    return EXIT_OK


def main(script, argv=None):
    """Entry point of both scripts: 0 when done, 2 with one line on a user's mistake or a fault, 3 when
    diverged, 128 + signal when stopped by one (docs/usage.md, "Run files")."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parse_args(script, argv)
        if args.evaluate:
            return evaluate_checkpoint(script, args, argv)
        return run(resolve(script, args, argv))
    except UserError as e:
        sys.stderr.write(f"{script}: error: {e}\n")
        return EXIT_USER
    except KeyboardInterrupt:
        sys.stderr.write(f"{script}: interrupted; continue from the last checkpoint with --resume <run directory>\n")
        return 128 + signal.SIGINT
    except BrokenPipeError:  # stdout closed (a pipe into `head`): the run stops at its last checkpoint
        sys.stderr.write(
            f"{script}: error: its output was closed; continue from the last checkpoint with --resume <run directory>\n"
        )
        return EXIT_USER
    except OSError as e:
        sys.stderr.write(
            f"{script}: error: {e.strerror or e} ({e.filename or 'no file named'}); check the path, its permissions and free space\n"
        )
        return EXIT_USER
