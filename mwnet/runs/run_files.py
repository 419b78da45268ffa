"""Everything a run writes and reads back, and the rules for reusing a run directory (docs/usage.md, "Run files").

config.json               every flag, the derived seeds, the actual noise rate, the vnet loss grid, versions
metrics.jsonl             one JSON line per evaluation (also kept in the checkpoint, which is the truth)
results.json              status ("finished" or "diverged"), best and last test accuracy, speed, wall time
split.npz                 meta and training indices, clean and noisy labels
weights.npz               each training sample's last loss and weight, with its noisy-or-not flag
weighting_function.csv    the final meta-weight-net's weight at each loss of the grid
samples.csv               every training sample's label, prediction, loss and weight, most suspect (highest loss) first
                          (--evaluate writes samples-it<N>.csv or samples-best-it<N>.csv of the model it reads)
checkpoint.pt             everything needed to continue (--resume), at the last evaluation or stop
model_best.pt             model and meta-weight-net at the best test accuracy
train.log                 what the run printed, appended on every start and resume
.lock                     held (fcntl.flock) by the process that owns the directory
.mwnet-run                the marker: written first, so that a folder without it is never written into

One process owns a run directory for its whole life. Every file is written atomically (a temporary
file moved over the old one; atomic.py), JSON never holds NaN or Infinity, and readers drop a torn last line
of metrics.jsonl. RunDir writes only through its writer, which a ReadOnlyRunDir (torchrun's other processes)
replaces with one that writes nothing. Which flags make a configuration, and a run's name: identity.py. This module imports torch only to read and write checkpoints, so the runner,
summarize.py and plot.py read runs without it.
"""

import contextlib
import csv
import fcntl
import glob
import json
import math
import os
import socket
import time
import zipfile
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from mwnet.errors import UserError
from mwnet.runs.atomic import (  # noqa: F401  (re-exported: the writers' and readers' one module)
    TMP_PREFIX,
    NoWriter,
    Writer,
    _torch_save,
    save_npz_atomic,
    to_json,
    write_atomic,
    write_json,
    write_text_atomic,
)
from mwnet.runs.identity import (  # noqa: F401  (re-exported)
    ADDED_FLAGS,
    FREE_FLAGS,
    config_differences,
    config_key,
    default_run_name,
    merge_given,
    numbers_config,
    table_config,
)
from mwnet.untrusted import torch_file

CONFIG, METRICS, RESULTS = "config.json", "metrics.jsonl", "results.json"
SPLIT, WEIGHTS, CURVE = "split.npz", "weights.npz", "weighting_function.csv"
SELECTION = "meta_selection.json"  # --meta_source selected: the images, when, and their measured purity
SAMPLES = "samples.csv"  # the suspect labels (engine/samples.py), at a run's end
# Its columns. index: the sample's index in the dataset's training set (a streamed dataset's: its line in the
# list); path: a streamed dataset's image, relative to --data_path; weight: the final meta-weight-net's weight of
# the final model's loss (MW-Net); epoch_weight: the mean weight it received in the last epoch of training (its
# last len(training loader) iterations; empty if not drawn in them); clean_label and corrupted (1 or 0): where
# the clean label is known. An empty cell: not known or not defined for the method.
SAMPLE_COLUMNS = ("rank", "index", "path", "given_label", "given_class", "predicted_label", "predicted_class")
SAMPLE_COLUMNS += ("probability", "loss", "weight", "epoch_weight")
SAMPLE_COLUMNS_BEFORE = (*SAMPLE_COLUMNS, "clean_label", "corrupted")  # the header before the history was kept
SAMPLE_COLUMNS += ("mean_loss", "mean_margin", "early_loss", "early_margin", "clean_label", "corrupted")
# The columns a samples file may be sorted by, most suspect first, and their direction (1: highest first, -1:
# lowest first): engine/samples.ORDER picks one, suspects.py says which one a file is in.
SAMPLE_ORDERS = {"loss": 1, "mean_margin": -1, "mean_loss": 1, "early_margin": -1, "early_loss": 1}
CHECKPOINT, BEST, LOG, LOCK, TENSORBOARD = "checkpoint.pt", "model_best.pt", "train.log", ".lock", "tb"
META_BEST = "model_meta_best.pt"  # the model of the highest accuracy on the meta set: chosen without a test label
# Written first into every run directory this project makes: a folder without it is never written into.
MARKER = ".mwnet-run"
MARKER_TEXT = "A run directory of mwnet (Meta-Weight-Net reproduction); its files are described in docs/usage.md.\n"
# What a fresh start replaces in a directory that holds no run (no checkpoint, no results). train.log stays.
PARTIAL = (CONFIG, METRICS, SPLIT, WEIGHTS, CURVE, BEST, META_BEST, TENSORBOARD, SELECTION, SAMPLES)

CHECKPOINT_KEYS = ("config", "device_type", "progress", "model", "vnet", "optimizer", "vnet_optimizer")
CHECKPOINT_KEYS += ("train_loader", "meta_loader", "tally", "torch_rng", "cuda_rng")
BEST_KEYS = ("config", "step", "test_acc", "model", "vnet")


# ---------------------------------------------------------------- reading, for everyone


def read_json(path):
    """A JSON object of a run (config.json, results.json), or None if the file does not exist."""
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is not readable JSON ({type(e).__name__}); the run directory is damaged") from None
    if not isinstance(value, dict):
        raise UserError(f"{path} holds a JSON {type(value).__name__}, not an object; the run directory is damaged")
    return value


def read_metrics(run_dir):
    """The evaluations of a run. A torn last line (a kill in mid-write) is dropped; a bad line before it is an error."""
    path = os.path.join(run_dir, METRICS)
    if not os.path.exists(path):
        return []
    try:
        with open(path) as f:
            lines = f.read().split("\n")
    except (OSError, ValueError) as e:  # UnicodeDecodeError among them: not text
        raise UserError(
            f"{path} is not readable JSON lines ({type(e).__name__}); the run directory is damaged"
        ) from None
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            if i == len(lines) - 1:  # the last line, without its newline: torn
                break
            raise UserError(
                f"{path}: line {i + 1} is not JSON; the file is damaged (resuming the run rewrites it from its checkpoint)"
            ) from None
    return records


WEIGHT_ARRAYS = ("is_noisy", "weight")  # what the readers use of save_weights's arrays


def read_weights(run_dir):
    """weights.npz of a finished run as a dict of arrays, or None if there is none; its arrays checked (one
    value per training sample each, the weights and noise flags among them)."""
    path = os.path.join(run_dir, WEIGHTS)
    if not os.path.exists(path):
        return None
    try:
        with np.load(path) as f:  # allow_pickle=False: a pickle inside is refused, never run
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise UserError(f"{path} is damaged ({type(e).__name__}); the run directory is damaged") from None
    missing = [k for k in WEIGHT_ARRAYS if k not in arrays]
    lengths = {a.shape for a in arrays.values()}
    if missing or len(lengths) != 1 or len(next(iter(lengths))) != 1:
        what = f"no {missing[0]!r} array" if missing else "arrays of different shapes"
        raise UserError(f"{path} is damaged ({what}); the run directory is damaged")
    return arrays


def _cell(value):
    if isinstance(value, str):
        return value
    if isinstance(value, float | np.floating):
        return "" if not math.isfinite(value) else f"{value:.6g}"
    return "" if value < 0 else str(int(value))  # labels, indices: -1 is unknown


def read_samples(path):
    """samples.csv (or a file of its kind) as {column: list of text}, its header and rows checked."""
    rows = list(iter_samples(path))
    return {name: [r[i] for r in rows] for i, name in enumerate(SAMPLE_COLUMNS)}


def iter_samples(path):
    """samples.csv's rows (lists of text, in SAMPLE_COLUMNS' order) one at a time, each checked as it comes: a
    file of a million rows read in little memory. path: the file, or the run directory that holds it."""
    if os.path.isdir(path):
        path = os.path.join(path, SAMPLES)
    try:
        f = open(path, encoding="utf-8", errors="surrogateescape", newline="")  # paths: any bytes a name holds
    except FileNotFoundError:
        raise UserError(
            f"{path} does not exist; a run writes it when it finishes (--evaluate RUN writes one for its checkpoint)"
        ) from None
    except OSError as e:
        raise UserError(f"{path} is not a readable CSV ({type(e).__name__}); the file is damaged") from None
    with f:
        reader = csv.reader(f)
        row = None
        try:
            header = tuple(next(reader, ()))
            if any(0xDC80 <= ord(ch) <= 0xDCFF for name in header for ch in name):  # bytes that are not UTF-8
                raise UserError(f"{path} is not a readable CSV (not UTF-8); the file is damaged")
            if header not in (SAMPLE_COLUMNS, SAMPLE_COLUMNS_BEFORE):
                raise UserError(
                    f"{path} is not a samples file of this project (its header differs); the file is damaged"
                )
            pick = [header.index(c) if c in header else None for c in SAMPLE_COLUMNS]  # an older file: empty cells
            for line, row in enumerate(reader, 2):
                if len(row) != len(header):
                    raise UserError(f"{path}: line {line} has another number of fields; the file is damaged")
                yield row if header == SAMPLE_COLUMNS else ["" if i is None else row[i] for i in pick]
        except (OSError, ValueError, csv.Error) as e:
            raise UserError(f"{path} is not a readable CSV ({type(e).__name__}); the file is damaged") from None
        if row is None:
            raise UserError(f"{path}: no sample; the file is damaged")


def status(run_dir):
    """empty, started (flags written, no checkpoint: holds no run), stopped, finished or diverged."""
    results = read_json(os.path.join(run_dir, RESULTS))
    if results is not None:
        return results.get("status", "finished")
    if os.path.exists(os.path.join(run_dir, CHECKPOINT)):
        return "stopped"
    return "started" if os.path.exists(os.path.join(run_dir, CONFIG)) else "empty"


def is_ours(run_dir):
    """Whether `run_dir` is empty, missing, or a run directory of this project: its marker, or (made before the
    marker) a lock file beside a config.json of ours. Any other folder is a user's, never written into."""
    if not os.path.isdir(run_dir) or not os.listdir(run_dir) or os.path.exists(os.path.join(run_dir, MARKER)):
        return True
    try:
        config = read_json(os.path.join(run_dir, CONFIG))
    except UserError:
        return False
    return os.path.exists(os.path.join(run_dir, LOCK)) and bool(config) and {"script", "seeds"} <= set(config)


def holds_run(state):
    return state in ("stopped", "finished", "diverged")


@dataclass
class Run:
    """A run directory as the runner, summarize.py and plot.py see it."""

    path: str
    config: dict | None
    results: dict | None
    status: str

    @cached_property
    def metrics(self):
        return read_metrics(self.path)

    @cached_property
    def weights(self):
        return read_weights(self.path)


def read_run(run_dir):
    return Run(
        run_dir, read_json(os.path.join(run_dir, CONFIG)), read_json(os.path.join(run_dir, RESULTS)), status(run_dir)
    )


class RunDir:
    """A run directory: the lock, the fresh-start and resume rules, every file written and read back."""

    def __init__(self, path):
        self.path = path
        self._lock_fd = None
        self._out = Writer(path)  # every write goes through it: a read-only directory holds one that cannot write

    def file(self, name):
        return os.path.join(self.path, name)

    def status(self):
        return status(self.path)

    def check_usable(self):
        """Before anything is written: the path must not exist yet, or be an empty folder or a run directory."""
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise UserError(f"--out {self.path} is a file, not a directory; choose another --out")
        if not is_ours(self.path):  # a user's own folder is never written into
            names = ", ".join(sorted(os.listdir(self.path))[:4])
            raise UserError(
                f"{self.path} holds files this project did not write ({names}, ...); choose another --out, or an empty folder"
            )

    @contextlib.contextmanager
    def owned(self):
        """Own the directory while the block runs: an OS lock, released at its end and by the OS when the
        process dies, kill -9 included, so that no stale lock is ever left."""
        self.lock()
        try:
            yield self
        finally:
            self.release()

    def release(self):
        os.close(self._lock_fd)
        self._lock_fd = None

    def lock(self):
        """Make the directory (marked as a run directory) and lock it, or say who holds it."""
        self.check_usable()
        try:
            os.makedirs(self.path, exist_ok=True)
            if not os.path.exists(self.file(MARKER)):
                with open(self.file(MARKER), "w") as f:
                    f.write(MARKER_TEXT)
            fd = os.open(self.file(LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UserError(
                f"cannot write to {self.path} ({e.strerror}); check its permissions or choose another --out"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UserError(f"{self.path} is in use by {holder}; wait for it to end, or choose another --out") from None
        self._lock_fd = fd

    def claim(self):
        """Once the run starts (not when it is refused): name the holder in the lock file, for a second process."""
        os.ftruncate(self._lock_fd, 0)
        when = time.strftime("%Y-%m-%d %H:%M:%S")
        os.pwrite(self._lock_fd, f"process {os.getpid()} on {socket.gethostname()} since {when}\n".encode(), 0)

    def remove_temporaries(self):
        """Temporary files of writes cut short by a kill (each a full checkpoint for WRN-28-10)."""
        for path in glob.glob(self.file(TMP_PREFIX + "*")):
            self._out.remove(os.path.basename(path))

    def prepare_fresh(self):
        """Under the lock: refuse a directory that holds a run, else clear what a stopped start left."""
        state = self.status()
        if holds_run(state):
            what = {"stopped": "a stopped run", "finished": "a finished run", "diverged": "a diverged run"}[state]
            hint = f"continue it with --resume {self.path}, or" if state == "stopped" else "remove it, or"
            raise UserError(f"{self.path} already holds {what}; {hint} choose another --out or --name")
        self.remove_temporaries()
        for name in PARTIAL:
            self._out.remove(name)

    # -- checkpoints

    def save_checkpoint(self, state):
        self._out.atomic(CHECKPOINT, lambda tmp: _torch_save(state, tmp))

    def save_best(self, state, name=BEST):
        """model_best.pt (chosen by test accuracy, as the original's best), or model_meta_best.pt (by the meta
        set's accuracy)."""
        self._out.atomic(name, lambda tmp: _torch_save(state, tmp))

    def load_checkpoint(self):
        path = self.file(CHECKPOINT)
        state = load_state(path, (), "checkpoint")
        if isinstance(state, dict) and set(BEST_KEYS) <= set(state) and "progress" not in state:
            raise UserError(
                f"{path} is a best model (model_best.pt), which holds no optimiser or loader state to continue from; evaluate it with --evaluate, or resume from the run's own checkpoint.pt"
            )
        return load_state(path, CHECKPOINT_KEYS, "checkpoint", state)

    # -- metrics, results and the rest

    def append_metrics(self, record):
        self._out.append(METRICS, to_json(record) + "\n")

    def rewrite_metrics(self, records):
        """On resume: exactly the evaluations the checkpoint holds (a later, torn or damaged line is not kept)."""
        self._out.text(METRICS, "".join(to_json(r) + "\n" for r in records))

    def write_config(self, config):
        self._out.json(CONFIG, config)

    def read_config(self):
        return read_json(self.file(CONFIG))

    def write_results(self, results):
        self._out.json(RESULTS, results)

    def save_split(self, meta_idx, train_idx, clean_labels, noisy_labels):
        self._out.npz(
            SPLIT,
            meta_idx=meta_idx,
            train_idx=train_idx,
            clean_labels=clean_labels,
            noisy_labels=noisy_labels,
        )

    def save_weights(self, train_idx, clean_labels, noisy_labels, loss, weight):
        is_noisy = clean_labels != noisy_labels
        self._out.npz(
            WEIGHTS,
            train_idx=train_idx,
            clean_labels=clean_labels,
            noisy_labels=noisy_labels,
            is_noisy=is_noisy,
            loss=loss,
            weight=weight,
        )

    def save_samples(self, columns, name=SAMPLES):
        """samples.csv: engine/samples.table's columns, in SAMPLE_COLUMNS' order; None: an empty column."""
        n = len(columns["rank"])
        cols = [columns[c] if columns[c] is not None else [""] * n for c in SAMPLE_COLUMNS]

        def write(tmp):
            with open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:  # a name's own bytes
                writer = csv.writer(f)
                writer.writerow(SAMPLE_COLUMNS)
                writer.writerows([_cell(v) for v in row] for row in zip(*cols, strict=True))

        self._out.atomic(name, write)

    def save_meta_selection(self, record):
        """The selected meta set: positions in the training set (split.npz's train_idx), their original indices,
        the iteration, and the purity where clean labels are known (for the record: training never reads them)."""
        self._out.json(SELECTION, record)

    def save_weighting_function(self, grid, curve):
        def write(tmp):
            with open(tmp, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["loss", "weight"])
                writer.writerows(zip(grid, curve, strict=True))

        self._out.atomic(CURVE, write)


class ReadOnlyRunDir(RunDir):
    """The run directory as the processes other than 0 of a torchrun run see it: they read it (a checkpoint to
    resume from) and cannot write it, whatever they call: their writer writes nothing. Process 0 alone locks
    and writes it, and alone refuses a directory that holds a run."""

    def __init__(self, path):
        super().__init__(path)
        self._out = NoWriter()

    @contextlib.contextmanager
    def owned(self):
        yield self

    def claim(self):
        pass

    def check_usable(self):
        pass

    def prepare_fresh(self):
        pass


def load_state(path, keys, what, state=None):
    """A checkpoint or best model (read from `path` unless given), checked for the keys this project writes.
    weights_only: loading runs no code."""
    if state is None:
        state = torch_file(path, f"a {what} of this project", "start a new run instead")
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing:
        raise UserError(f"{path} is not a complete {what} of this project (no {missing[0]!r}); start a new run instead")
    return state


def model_file(path):
    """--evaluate's argument: a run directory (its checkpoint.pt), a checkpoint.pt, a model_best.pt or a
    model_meta_best.pt."""
    target = os.path.join(path, CHECKPOINT) if os.path.isdir(path) else path
    if not os.path.isfile(target):
        raise UserError(f"--evaluate {path}: no such checkpoint ({target} does not exist)")
    keys = BEST_KEYS if os.path.basename(target) in (BEST, META_BEST) else ("config", "progress", "model", "vnet")
    return target, load_state(target, keys, "model file")
