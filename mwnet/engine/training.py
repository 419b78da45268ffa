"""The one training loop behind MW-Net.py and train_WRN-28-10_Meta_PGC.py, and its schedule.

Each iteration the learning rate from Plan.lr_at, a training batch, a meta batch, and one step of the chosen
method (method/meta_step.py); at each evaluation one JSON line of metrics, the best model, a checkpoint when
due (run_files.py) and one line on screen and in train.log (reporting.py). launch.py starts a run (a fresh one,
a resumed one, one of several processes) and ends it.
"""

import math
import signal
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mwnet.engine import meta_selection
from mwnet.engine.components import (
    autocast,
)
from mwnet.engine.distributed import World
from mwnet.engine.loop_state import Progress, Tally, checkpoint_state
from mwnet.errors import UserError
from mwnet.method import PLAIN, method
from mwnet.runs.reporting import Reporter, TensorBoard, evaluation_line, training_line
from mwnet.runs.run_files import META_BEST, RunDir

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
    warmup: int = 0  # iterations of plain training first: --meta_source selected (then the selection), --clean_warmup
    tune_from: int | None = None  # --method finetune: the iteration from which it trains on meta batches, to the end

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
        """The milestones at or after the end (of the schedule, before any fine-tuning): their lr drop never happens."""
        per = self.steps_per_epoch if self.unit == "epoch" else 1
        end = self.total if self.tune_from is None else self.tune_from
        return [m for m in self.milestones if round(m * per) >= end]

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
    tune_from = None
    if method(args.method).tunes:  # the schedule's lr after its end is its last one: fine-tuning runs at it
        tune_from, total = total, total + (2 if args.dry_run else args.finetune_iters)
    plan = Plan(spe, total, period, args.unit, args.lr, list(args.milestones), images, args.real_lr_ahead)
    plan.tune_from = tune_from
    if args.meta_source == "selected" or args.clean_warmup:
        plan.warmup = 1 if args.dry_run else round(args.warmup * spe) if args.unit == "epoch" else args.warmup
        if not 1 <= plan.warmup < total:
            what = "the selected meta set" if args.meta_source == "selected" else "--clean_warmup"
            raise UserError(
                f"--warmup {args.warmup:g} {args.unit}s is {plan.warmup} of the run's {total} iterations; {what} needs a warm-up within the run"
            )
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
def evaluate(model, test, world=None, num_classes=None):
    """Test loss (the true per-sample mean) and accuracy in %, in eval mode; shared out over the processes.
    With num_classes, also each class's accuracy in % (None for a class without test images)."""
    world = world or World()
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=test.device)
    k = num_classes or 1
    correct = torch.zeros(k, dtype=torch.long, device=test.device)  # per class when asked, else all in one
    for x, y, _ in test.in_order(part=(world.rank, world.size)):
        logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
        right = logits.argmax(1) == y
        correct += torch.bincount(y[right], minlength=k)[:k] if num_classes else right.sum()
    world.sum_(loss_sum)
    world.sum_(correct)
    model.train()
    n = len(test.labels)
    loss, acc = loss_sum.item() / n, 100.0 * correct.sum().item() / n
    if not num_classes:
        return loss, acc
    sizes = torch.bincount(torch.as_tensor(test.labels, dtype=torch.long), minlength=k)[:k].tolist()
    per_class = [round(100.0 * c / m, 4) if m else None for c, m in zip(correct.tolist(), sizes)]
    return loss, acc, per_class


@torch.no_grad()
def vnet_curve(vnet, device):
    if vnet is None:
        return None
    grid = torch.tensor(LOSS_GRID, device=device).unsqueeze(1)
    return [round(v, 6) for v in vnet(grid).squeeze(1).tolist()]


def one_step(args, learner, data, x, y, lr, reduce=None, plain=False):
    """One iteration of the method (its MethodSpec's step); plain: a step of plain training (a warm-up's,
    --meta_source selected or --clean_warmup), as is every step before a meta set exists."""
    spec = method(args.method)
    if plain or (spec.meta_set and data.meta is None):
        return PLAIN.step(learner, args, x, y, None, lr, reduce)
    if not spec.meta_set:  # plain training, or its step with a loss of its own
        return spec.step(learner, args, x, y, None, lr, reduce)
    mx, my, _ = data.meta.next_batch()
    return spec.step(learner, args, x, y, (mx, my), lr, reduce)


class StopSignals:
    """SIGINT, SIGTERM, SIGUSR1, SIGHUP during the loop: the iteration finishes, a checkpoint is written at it,
    and the run exits with 128 + the signal. A second SIGINT stops at once (the last checkpoint stays). A
    signal ignored when the run starts stays ignored: SIGINT in a background job, SIGHUP under nohup.

    hold (a run of several processes): an error that ends the loop leaves these handlers in place, so that a
    signal coming after it is ignored. When one process dies, torchrun sends SIGTERM to the others, and it
    can come while a survivor is on its way out with the one line that says what happened; with the default
    handler back, that line would be lost. The process is ending either way."""

    def __init__(self, hold=False):
        self.hold = hold

    def __enter__(self):
        self.received = None
        wanted = [signal.SIGTERM, signal.SIGUSR1]
        wanted += [s for s in (signal.SIGINT, signal.SIGHUP) if signal.getsignal(s) is not signal.SIG_IGN]
        self.previous = {s: signal.signal(s, self._handle) for s in wanted}
        return self

    def __exit__(self, kind, *exc):
        if self.hold and kind is not None:
            return
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
    seeds: list  # of the model, the training batches and the meta batches
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
        if s.report.output_closed and signals.received is None:  # a closed output stops the run as SIGPIPE would
            signals.received = signal.SIGPIPE
        if world.size > 1:  # every process stops at the same iteration
            signals.received = world.agree(signals.received or 0) or None
        if signals.received is not None:
            break
        if plan.warmup and step >= plan.warmup and data.meta is None:  # the warm-up's end: the meta set, then
            record, s.data = meta_selection.select(s)
            data = s.data
            s.run_dir.save_meta_selection(record)
            s.checkpoint()  # one that holds it
        lr, real_lr = plan.lr_at(step), plan.real_lr_at(step)
        for group in learner.optimizer.param_groups:
            group["lr"] = real_lr
        tuning = plan.tune_from is not None and step >= plan.tune_from  # fine-tuning: plain steps on meta batches
        x, y, idx = (data.meta if tuning else data.train).next_batch()
        with autocast(args.precision, device):
            out = one_step(args, learner, data, x, y, lr, world.reduce, plain=step < plan.warmup or tuning)
        out, idx = world.gather_batch(out, idx)  # every process records the whole batch
        if tuning:  # the meta batch's loss is the line's training loss; no training sample was drawn
            none = torch.zeros(len(idx), dtype=torch.bool, device=device)
            s.tally.add(out, none, none, meta=False)
        else:
            meta = data.meta is not None and step >= plan.warmup
            s.tally.add(out, data.is_noisy[idx], data.is_clean[idx], meta=meta)
            early = plan.real_lr_at(step) == plan.lr  # before the first lr drop
            progress.record(step, idx, out["losses"].float(), out["weights"].float(), out["margins"], early)
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
            test_loss, test_acc, class_acc = evaluate(learner.model, data.test, world, data.num_classes)
            # the meta set's accuracy: a model chosen without a test label (model_meta_best.pt)
            meta_acc = None if data.meta is None else evaluate(learner.model, data.meta, world)[1]
        summary, finite = s.tally.read()
        progress.elapsed += time.perf_counter() - mark
        if not (finite and math.isfinite(test_loss)):
            return "diverged", (window, step + 1)
        record = {"iteration": step + 1, "epoch": round(plan.epoch(step), 6), "lr": real_lr, **summary}
        record["meta_acc"] = meta_acc
        evaluated(s, record, test_loss, test_acc, class_acc)
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


def evaluated(s, record, test_loss, test_acc, class_acc=None):
    """After a finite evaluation: the best model, the checkpoint when due (checkpoint_due), then the metrics
    line. metrics.jsonl may run ahead of the checkpoint, which holds every line up to it: a resume drops
    the lines past it and computes them again, to the same values."""
    progress, learner = s.progress, s.learner
    is_best = progress.best_acc is None or test_acc > progress.best_acc
    if is_best:
        progress.best_acc, progress.best_step = test_acc, record["iteration"]
    progress.last_acc = test_acc
    record.update(test_loss=test_loss, test_acc=test_acc, best_acc=progress.best_acc, class_acc=class_acc)
    record.update(progress.separation(s.data.is_noisy, s.data.is_clean))  # can a loss-based weight tell them apart
    record.update(vnet_curve=vnet_curve(learner.vnet, s.data.test.device), elapsed=round(progress.elapsed, 3))
    progress.records.append(record)
    vnet = None if learner.vnet is None else learner.vnet.state_dict()
    best = {"config": s.config, "step": record["iteration"], "test_acc": test_acc, "model": learner.model.state_dict()}
    if is_best:
        s.run_dir.save_best({**best, "vnet": vnet})
    meta_acc = record.get("meta_acc")
    if meta_acc is not None and (progress.best_meta_acc is None or meta_acc > progress.best_meta_acc):
        progress.best_meta_acc, progress.best_meta_step = meta_acc, record["iteration"]
        s.run_dir.save_best({**best, "vnet": vnet, "meta_acc": meta_acc}, META_BEST)
    s.tally.reset()
    since = time.perf_counter() - s.checkpoint_time
    if checkpoint_due(s.plan, record["iteration"], since, s.args.checkpoint_every):
        s.checkpoint()
    s.run_dir.append_metrics(record)
    s.report.line(evaluation_line(record, s.plan.total, s.report.eta(progress.step, s.plan.total)))
    if s.tb is not None:
        s.tb.evaluation(record, LOSS_GRID, progress.last_weight, s.data.is_noisy)
