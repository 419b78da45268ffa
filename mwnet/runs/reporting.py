"""What a run shows while it runs, and what it leaves in <run>/train.log (docs/usage.md, "What a run shows").

A start block (where, on what, how much data, the actual noise, the schedule), then one plain line per
evaluation (and every --print-freq iterations), then the end. On a terminal a tqdm bar runs below the
lines; elsewhere (a log file, the runner, SLURM) there is no bar, only the lines. Every line is also
appended to train.log, which survives resumes. --tensorboard adds the same numbers as TensorBoard events.
"""

import io
import math
import os
import sys
import time

import torch
from tqdm import tqdm

from mwnet.models import model_label


def duration(seconds):
    """h:mm:ss (or d days h:mm:ss) for elapsed times and ETAs."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = int(round(seconds))
    days, rest = divmod(seconds, 86400)
    text = f"{rest // 3600}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}d {text}" if days else text


def _num(value, digits):
    return "-" if value is None else f"{value:.{digits}f}"


def setting(args, noise_rate, data):
    """The data's setting in words: noise type and probability, imbalance, and the actual share of wrong labels."""
    parts = []
    if args.imb_factor:
        parts.append(f"long-tailed, imbalance factor {args.imb_factor:g}")
    about = data.about
    if about.own_labels and not about.named_by_path:
        return f"its {about.noise_name} labels; {100 * noise_rate:.1f}% wrong among the training images that also have a clean label"
    if about.named_by_path:
        known = data.clean_labels >= 0
        tail = (
            f"{100 * noise_rate:.1f}% wrong among the {int(known.sum())} with a clean label"
            if known.any()
            else "no clean label known"
        )
        return f"its own labels ({args.data_path}, {data.num_classes} classes; {tail})"
    if args.corruption_type == "human":
        parts.append(f"human labels ({args.human_labels}, CIFAR-N)")
    elif args.corruption_prob or not args.imb_factor:
        parts.append(f"{args.corruption_type} noise p={args.corruption_prob:g}")
    return ", ".join(parts) + f"; {100 * noise_rate:.1f}% of training labels wrong"


def meta_words(args, data, plan):
    if args.meta_source == "clean" and data.about.meta_pool_whole and data.meta is not None:
        return f"{len(data.meta_idx)} meta (its meta split)"
    if args.meta_source == "clean":
        return f"{len(data.meta_idx)} meta" + (f", used from iteration {plan.warmup}" if args.clean_warmup else "")
    return f"{args.num_meta} meta selected from them at iteration {plan.warmup} (their noisy labels)"


def banner(args, plan, data, device, run_dir, resumed_at, processes=1):
    model = model_label(vars(args))
    threads = (
        f" ({torch.get_num_threads()} CPU threads)"
        if device.type == "cpu"
        else f" ({torch.cuda.get_device_name(device)})"
    )
    if args.unit == "epoch":
        schedule = f"{plan.total} iterations ({plan.total / plan.steps_per_epoch:g} epochs of {plan.steps_per_epoch})"
        unit = "epochs"
    else:
        schedule, unit = f"{plan.total} iterations", "iterations"
    late = plan.late_milestones()
    within = [m for m in plan.milestones if m not in late]
    schedule += f", lr {args.lr:g}" + (
        f" x0.1 at {unit} {', '.join(f'{m:g}' for m in within)}" if within else " throughout"
    )
    if late:
        schedule += (
            f" ({unit} {', '.join(f'{m:g}' for m in late)}: after the {'dry run' if args.dry_run else 'run'}'s end)"
        )
    if args.real_lr_ahead:
        schedule += f" ({args.real_lr_ahead:g} {unit} earlier for the real step)"
    lines = [
        f"{args.script}: {args.method} ({'dry run, ' if args.dry_run else ''}{model}) on {args.dataset}, {setting(args, data.noise_rate, data)}",
        f"  run directory  {run_dir}",
        f"  device         {device}{threads}, precision {args.precision}"
        + (f"; {processes} processes (torchrun), each a slice of every batch" if processes > 1 else ""),
        f"  data           {len(data.train_idx)} training, {meta_words(args, data, plan)}, {len(data.test.labels)} test images",
        f"  schedule       {schedule}; evaluation every {plan.eval_period} iterations",
    ]
    if resumed_at is not None:
        lines.append(f"  resumed        at iteration {resumed_at}")
    return lines


def evaluation_line(record, total, eta):
    """One evaluation in a line: grep-able, the same on a terminal, in a log file and in train.log."""
    return (
        f"eval  it {record['iteration']}/{total}  ep {record['epoch']:.2f}  lr {record['lr']:g}"
        f"  loss {_num(record['train_loss'], 4)}  meta {_num(record['meta_loss'], 4)}"
        f"  w_clean {_num(record['weight_clean'], 3)}  w_noisy {_num(record['weight_noisy'], 3)}"
        f"  test_loss {_num(record['test_loss'], 4)}  acc {record['test_acc']:.2f}  best {record['best_acc']:.2f}"
        f"  elapsed {duration(record['elapsed'])}  eta {duration(eta)}"
    )


def training_line(step, total, epoch, lr, summary, eta):
    """Progress between evaluations (--print-freq, or every PROGRESS_SECONDS off a terminal): the training losses
    and weights since the last evaluation, as the original printed them, and the ETA."""
    return (
        f"train it {step}/{total}  ep {epoch:.2f}  lr {lr:g}  loss {_num(summary['train_loss'], 4)}"
        f"  meta {_num(summary['meta_loss'], 4)}  w_clean {_num(summary['weight_clean'], 3)}  w_noisy {_num(summary['weight_noisy'], 3)}"
        f"  eta {duration(eta)}"
    )


def silence(stream):
    """Points a closed stream's file descriptor at /dev/null: what Python still flushes at exit goes nowhere,
    rather than into an "Exception ignored ... BrokenPipeError" message. (A stream without a descriptor, as
    pytest's capture, is left as it is.)"""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, stream.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass


class Reporter:
    """Prints the lines (stdout, or stderr for errors) and appends them to train.log; a bar on a terminal, and
    off a terminal (a log file, SLURM, nohup) a progress line at least every PROGRESS_SECONDS instead."""

    PROGRESS_SECONDS = 60

    def __init__(self, log_path, terminal=None):
        """log_path None: a process of a torchrun run other than 0, which shows nothing and writes nothing."""
        # a line may name a file whose name is not UTF-8: its bytes escaped, never an error
        self.log = None if log_path is None else open(log_path, "a", buffering=1, errors="backslashreplace")
        self.terminal = (sys.stderr.isatty() if terminal is None else terminal) and self.log is not None
        self.bar = None
        self.closed = []  # the streams found closed
        self.last_line = time.perf_counter()
        self.write_log(f"---- {time.strftime('%Y-%m-%d %H:%M:%S')}\n")

    def write_log(self, text):
        if self.log is not None:
            self.log.write(text)

    def line(self, text, error=False):
        if self.log is None:
            return
        stream = sys.stderr if error else sys.stdout
        self._show(
            lambda: self.bar.write(text, file=stream) if self.bar else print(text, file=stream, flush=True), stream
        )
        self.log.write(text + "\n")
        self.last_line = time.perf_counter()

    def _show(self, write, stream):
        """Shows on the terminal until `stream` is closed (a pipe into `head` that ended, a terminal gone with its
        SSH connection): from then on train.log alone gets what it would have shown, and the loop stops at the
        iteration as on a signal (output_closed)."""
        if stream in self.closed:
            return
        try:
            write()
        except OSError:  # EPIPE, or EIO from a terminal that hung up
            self.closed.append(stream)
            silence(stream)
            if stream is sys.stderr:
                self.bar = None

    @property
    def output_closed(self):
        return bool(self.closed)

    def progress_due(self):
        """Off a terminal, whether a progress line is due: nothing printed for PROGRESS_SECONDS (no host sync)."""
        quiet = self.log is None or self.terminal
        return not quiet and time.perf_counter() - self.last_line >= self.PROGRESS_SECONDS

    def start(self, total, initial, desc):
        """The bar, on a terminal. smoothing=0: its rate and ETA average over the whole session, evaluations included."""
        self.session = (time.perf_counter(), initial)
        if self.terminal:
            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="it", smoothing=0, dynamic_ncols=True)

    def eta(self, step, total):
        """Seconds left at this session's average pace, evaluation time included."""
        start, initial = self.session
        done = step - initial
        return (time.perf_counter() - start) / done * (total - step) if done > 0 else None

    def advance(self, epoch, lr, last_acc, best_acc):
        if self.bar is not None:
            postfix = f"ep {epoch:.2f} lr {lr:g} acc {_num(last_acc, 2)} best {_num(best_acc, 2)}"
            self._show(lambda: (self.bar.set_postfix_str(postfix, refresh=False), self.bar.update(1)), sys.stderr)

    def close(self):
        if self.bar is not None:
            self._show(self.bar.close, sys.stderr)
            self.bar = None
        if self.log is not None:
            self.log.close()


class TensorBoard:
    """--tensorboard: per evaluation the metrics as scalars, V at losses 0, 1, ..., 10, and the weight
    histograms of clean and of noisy training samples, in <run>/tb."""

    def __init__(self, path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(path)

    def evaluation(self, record, grid, last_weight, is_noisy):
        step = record["iteration"]
        for key in (
            "lr",
            "train_loss",
            "train_ce",
            "meta_loss",
            "test_loss",
            "test_acc",
            "weight_clean",
            "weight_noisy",
        ):
            if record.get(key) is not None:
                self.writer.add_scalar(key, record[key], step)
        for x, v in zip(grid, record["vnet_curve"] or [], strict=False):
            if float(x).is_integer():
                self.writer.add_scalar(f"vnet/V(loss={x:g})", v, step)
        seen = ~torch.isnan(last_weight)
        for name, mask in (("clean", seen & ~is_noisy), ("noisy", seen & is_noisy)):
            if mask.any():
                self.writer.add_histogram(f"weights/{name}", last_weight[mask].cpu(), step)
        self.writer.flush()

    def close(self):
        self.writer.close()
