"""Synthetic data in the on-disk formats of CIFAR-10/100 and Fashion-MNIST, and ways to run the scripts.

Every test runs on the CPU whatever the machine has: subprocesses get CUDA_VISIBLE_DEVICES="" and in-process
runs --device cpu (tests/test_cuda.py, the GPU self-check, is the exception). Both use one CPU thread, so
that a subprocess and an in-process run of the same configuration compute the same numbers.
"""

import contextlib
import gzip
import hashlib
import os
import pickle
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

# Under pytest-xdist each worker gets its share of the cores, so that the workers do not fight over them.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MW, WRN = "MW-Net.py", "train_WRN-28-10_Meta_PGC.py"
SMALL_WRN = ["--layers", "10", "--widen-factor", "1"]
FAST = ["--batch_size", "32", "--num_meta", "100"]
# 14 iterations of 16 images, evaluated at 4, 8, 12 and 14 (69 iterations an epoch), a constant lr, a checkpoint
# at each evaluation (the default cadence writes one every 5 minutes: tests/test_run_dir.py tests it apart), of
# SmallCNN: what these runs test (resume, signals, checkpoints, run files) does not depend on the classifier, and
# ResNet-32 costs ten times as much (the models and the step are tested with ResNet-32 and WRN on their own).
SHORT = ["--epochs", "0.2", "--eval_every", "0.06", "--batch_size", "16", "--num_meta", "100", "--milestones"]
SHORT += ["--checkpoint_every", "0", "--arch", "smallcnn"]
# Where a test needs a run that is still training a few seconds after it starts (a lock held, a signal or a kill
# landing mid-run), it trains ResNet-32.
BUSY = ["--arch", "resnet32"]


def stop_at(monkeypatch, at, signum=signal.SIGUSR1):
    """Send the process `signum` during its `at`-th iteration, as a scheduler or a user would."""
    from mwnet.engine import training

    original, count = training.one_step, [0]

    def step(*args, **kwargs):
        out = original(*args, **kwargs)
        count[0] += 1
        if count[0] == at:
            os.kill(os.getpid(), signum)
        return out

    monkeypatch.setattr(training, "one_step", step)


def crash_at(monkeypatch, at):
    """Raise in the process's `at`-th iteration, as a crash would (like kill -9, nothing is written then); returns
    the step function to put back."""
    from mwnet.engine import training

    original, count = training.one_step, [0]

    def step(*args, **kwargs):
        count[0] += 1
        if count[0] == at:
            raise RuntimeError("a crash")
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "one_step", step)
    return original


CPU_ENV = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def write_cifar(root, name, per_class, test_per_class=2, seed=0):
    """A small CIFAR-format folder; returns (train images N x 32 x 32 x 3, fine labels, coarse)."""
    rng = np.random.default_rng(seed)
    k = 10 if name == "cifar10" else 100
    n = per_class * k
    labels = rng.permutation(np.repeat(np.arange(k), per_class))
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    coarse_of = rng.permutation(np.arange(k)) // 5  # 20 coarse classes of 5 fine ones each
    test_labels = np.repeat(np.arange(k), test_per_class)
    test_images = rng.integers(0, 256, (len(test_labels), 32, 32, 3), dtype=np.uint8)

    def entry(imgs, labs):
        flat = imgs.transpose(0, 3, 1, 2).reshape(len(imgs), -1)  # rows of R, G, B planes as on disk
        if name == "cifar10":
            return {"data": flat, "labels": labs.tolist()}
        return {"data": flat, "fine_labels": labs.tolist(), "coarse_labels": coarse_of[labs].tolist()}

    if name == "cifar10":
        folder = os.path.join(root, "cifar-10-batches-py")
        parts = np.array_split(np.arange(n), 5)
        files = {f"data_batch_{i + 1}": entry(images[p], labels[p]) for i, p in enumerate(parts)}
        files["test_batch"] = entry(test_images, test_labels)
    else:
        folder = os.path.join(root, "cifar-100-python")
        files = {"train": entry(images, labels), "test": entry(test_images, test_labels)}
    os.makedirs(folder, exist_ok=True)
    for fname, content in files.items():
        with open(os.path.join(folder, fname), "wb") as f:
            pickle.dump(content, f, protocol=2)
    return images, labels, (coarse_of[labels] if name == "cifar100" else None)


class Payload:
    """Unpickled, it would create the file `marker`: the proof that a reader ran code from a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_idx(path, array):
    header = b"\x00\x00\x08" + bytes([array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_fashion(root, per_class=30, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(10), per_class))
    images = rng.integers(1, 256, (len(labels), 28, 28), dtype=np.uint8)
    os.makedirs(root, exist_ok=True)
    write_idx(os.path.join(root, "train-images-idx3-ubyte.gz"), images)
    write_idx(os.path.join(root, "train-labels-idx1-ubyte.gz"), labels)
    write_idx(os.path.join(root, "t10k-images-idx3-ubyte.gz"), images[:20])
    write_idx(os.path.join(root, "t10k-labels-idx1-ubyte.gz"), labels[:20])
    return images, labels


def run_cli(*args, cwd=ROOT):
    """Run a script of the project on the CPU; returns the CompletedProcess (text)."""
    return subprocess.run([sys.executable, *args], cwd=cwd, env=CPU_ENV, capture_output=True, text=True, timeout=600)


def default_sigint():
    """Popen's preexec_fn for a child that is sent SIGINT: SIGINT back to its default there. A shell that starts
    the tests in the background (`cmd &`) hands them SIGINT ignored, and Python then leaves it ignored, so a
    Ctrl-C sent to the child would do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(*args):
    """Start a script on the CPU, its stdout a pipe read line by line."""
    cmd = [sys.executable, *args]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=CPU_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint
    )


def wait_for_line(proc, fragment):
    """Read the process's stdout until a line holds `fragment`; returns the lines read."""
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if fragment in line:
            return lines
    raise AssertionError(f"no line with {fragment!r}: {''.join(lines)[-2000:]} {proc.stderr.read()[-2000:]}")


@contextlib.contextmanager
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class Result:
    def __init__(self, code, out, err):
        self.returncode, self.stdout, self.stderr = code, out, err


def run_main(capsys, script, *args, cpu=True):
    """Run a script in-process (no interpreter start, no torch import): its exit code, stdout and stderr."""
    from mwnet.engine.launch import main

    capsys.readouterr()
    with one_thread():
        code = main(script, [*args, *(["--device", "cpu"] if cpu else [])])
    out, err = capsys.readouterr()
    return Result(code, out, err)


def assert_in_suspect_order(rows):
    """samples.csv's rows (csv.DictReader's) as docs/usage.md says they come: the samples with a history first, by
    the column of samples.ORDER in its direction, then those never drawn, by their final loss, highest first."""
    from mwnet.engine.samples import ORDER
    from mwnet.runs.run_files import SAMPLE_ORDERS

    column, sign = ORDER, SAMPLE_ORDERS[ORDER]
    drawn = [r[column] != "" for r in rows]
    assert drawn == sorted(drawn, reverse=True)
    first = [sign * float(r[column]) for r, d in zip(rows, drawn, strict=True) if d]
    rest = [float(r["loss"]) for r, d in zip(rows, drawn, strict=True) if not d]
    assert first == sorted(first, reverse=True) and rest == sorted(rest, reverse=True)


def assert_one_line_error(proc, *fragments, code=2):
    """A user's mistake or a fault: the exit code, one line on stderr naming the problem, no traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def snapshot(folder):
    """Every file under `folder` with a hash of its bytes: equal snapshots mean nothing was touched."""
    out = {}
    for dirpath, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


def metrics(run_dir, drop=("elapsed",)):
    """metrics.jsonl without the wall-clock field; JSON's NaN and Infinity are refused."""
    import json

    def refuse(name):
        raise AssertionError(f"{run_dir}/metrics.jsonl holds {name}")

    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [{k: v for k, v in json.loads(line, parse_constant=refuse).items() if k not in drop} for line in f]


@pytest.fixture(scope="session")
def cifar10_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("c10")
    return str(root), write_cifar(str(root), "cifar10", per_class=120)


@pytest.fixture(scope="session")
def cifar100_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("c100")
    return str(root), write_cifar(str(root), "cifar100", per_class=12)


def write_clothing1m(root, train_per_class=6, val_per_class=4, test_per_class=2, size=(40, 48), seed=0):
    """A small Clothing1M in its official layout: JPEGs under images/, the two label files and the four key
    lists. Some training images also have a clean label (as in the dataset); the clean training list exists
    and must never be used. Returns {"train", "val", "test", "clean_train": (paths, labels)}."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    sets, noisy_kv, clean_kv = {}, [], []
    sizes = {"train": train_per_class, "val": val_per_class, "test": test_per_class, "clean_train": 1}
    for name, per_class in sizes.items():
        labels = np.repeat(np.arange(14), per_class)
        paths = []
        for i, label in enumerate(labels):
            rel = f"images/{i % 3}/{name}_{i}.jpg"
            os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
            pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            pixels[..., label % 3] = 20 * label  # a label-dependent colour, so that a model can learn something
            Image.fromarray(pixels).save(os.path.join(root, rel), quality=90)
            paths.append(rel)
        if name == "train":
            noisy = np.where(rng.random(len(labels)) < 0.4, rng.integers(0, 14, len(labels)), labels)
            noisy_kv += [f"{p} {y}" for p, y in zip(paths, noisy, strict=True)]
            clean_kv += [f"{p} {y}" for p, y in list(zip(paths, labels, strict=True))[::3]]  # some have both
            labels = noisy
        else:
            clean_kv += [f"{p} {y}" for p, y in zip(paths, labels, strict=True)]
        sets[name] = (paths, labels)
    files = {"noisy_label_kv.txt": noisy_kv, "clean_label_kv.txt": clean_kv}
    files.update(
        {f"{'noisy' if n == 'train' else 'clean'}_{n.replace('clean_', '')}_key_list.txt": sets[n][0] for n in sets}
    )
    for name, lines in files.items():
        with open(os.path.join(root, name), "w") as f:
            f.write("\n".join(lines) + "\n")
    return sets
