"""Synthetic data in the on-disk formats of CIFAR-10/100 and Fashion-MNIST, and a CLI runner."""

import gzip
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    """Run a script of the project; returns the CompletedProcess (text)."""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def assert_one_line_error(proc, *fragments):
    """A user's mistake: non-zero exit, one line on stderr naming the problem, no traceback."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="session")
def cifar10_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("c10")
    return str(root), write_cifar(str(root), "cifar10", per_class=120)


@pytest.fixture(scope="session")
def cifar100_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("c100")
    return str(root), write_cifar(str(root), "cifar100", per_class=12)
