"""Noisy and long-tailed CIFAR-10/100 and Fashion-MNIST, each with a clean, class-balanced meta set.

The split and the label noise are one pure function over a label array, `make_noisy_split`. With
seed 1 it reproduces the original Meta-Weight-Net code bit for bit (README, "Noise protocol").
The dataset classes keep the original's names, constructor and attributes, and add what a study
of noise needs: the corruption matrix, the clean labels, a noisy-or-not flag per sample.

Build and inspect a split from the command line (writes nothing unless --out is given):
    python load_corrupted_data.py --dataset fashionmnist --corruption_type flip --corruption_prob 0.4
    python load_corrupted_data.py --dataset cifar10 --data_path ./data --imb_factor 100 --num_meta 100
"""

import argparse
import contextlib
import fcntl
import gzip
import os
import pickle
import sys
import zlib

import numpy as np
import torch.utils.data as data
from PIL import Image

from errors import UserError

CORRUPTION_TYPES = ("unif", "flip", "flip2", "hierarchical")
DATASETS = ("cifar10", "cifar100", "fashionmnist")
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # the Debian package dataset-fashion-mnist

# Per-channel mean and std of the training images in [0, 1]: CIFAR's from the original scripts;
# Fashion-MNIST's measured on its 60,000 training images zero-padded to 32 x 32.
MEAN_STD = {
    "cifar10": ((125.3 / 255, 123.0 / 255, 113.9 / 255), (63.0 / 255, 62.1 / 255, 66.7 / 255)),
    "cifar100": ((125.3 / 255, 123.0 / 255, 113.9 / 255), (63.0 / 255, 62.1 / 255, 66.7 / 255)),
    "fashionmnist": ((0.2190,) * 3, (0.3318,) * 3),
}


# ---------------------------------------------------------------- corruption matrices (K x K)
# Each uses the original's floating-point operations, so that the rows' cumulative sums, and
# therefore the sampled labels, agree with it to the last bit.


def uniform_mix_C(mixing_ratio, num_classes):
    """p/K everywhere plus 1-p on the diagonal: the real share of wrong labels is p(K-1)/K."""
    uniform = np.full((num_classes, num_classes), 1 / num_classes)
    return mixing_ratio * uniform + (1 - mixing_ratio) * np.eye(num_classes)


def _flip_C(corruption_prob, num_classes, rng, targets_per_row):
    C = np.eye(num_classes) * (1 - corruption_prob)
    classes = np.arange(num_classes)
    for i in range(num_classes):
        others = classes[classes != i]
        if targets_per_row == 1:
            C[i][rng.choice(others)] = corruption_prob
        else:
            C[i][rng.choice(others, 2, replace=False)] = corruption_prob / 2
    return C


def flip_labels_C(corruption_prob, num_classes, seed=1):
    """Each class flips to one other class, drawn with `seed`, with probability p."""
    return _flip_C(corruption_prob, num_classes, np.random.RandomState(seed), 1)


def flip_labels_C_two(corruption_prob, num_classes, seed=1):
    """Each class flips to two other classes, drawn with `seed`, with probability p/2 each."""
    return _flip_C(corruption_prob, num_classes, np.random.RandomState(seed), 2)


def hierarchical_C(corruption_prob, labels, coarse_labels, num_classes):
    """Diagonal 1-p; p shared equally among the other fine classes of the same coarse class."""
    C = np.eye(num_classes) * (1 - corruption_prob)
    for coarse in np.unique(coarse_labels):
        fine = np.unique(labels[coarse_labels == coarse])
        for i in fine:
            others = fine[fine != i]
            C[i, others] += corruption_prob * 1 / len(others)
    return C


def corruption_matrix(corruption_type, corruption_prob, num_classes, labels=None, coarse_labels=None):
    """The matrix C of the original for this noise type; C[i, j] = P(noisy label j | clean i)."""
    if corruption_type == "unif":
        return uniform_mix_C(corruption_prob, num_classes)
    if corruption_type == "flip":
        return flip_labels_C(corruption_prob, num_classes)
    if corruption_type == "flip2":
        return flip_labels_C_two(corruption_prob, num_classes)
    return hierarchical_C(corruption_prob, np.asarray(labels), np.asarray(coarse_labels), num_classes)


# ---------------------------------------------------------------- the split and the noise


def long_tail_counts(num_images, num_classes, num_meta, imbalance_factor):
    """Images kept per class: int(img_max * r^(c/(K-1))), img_max = (N - num_meta)/K, r = 1/factor."""
    img_max = (num_images - num_meta) / num_classes
    r = 1 / imbalance_factor
    return [int(img_max * (r ** (c / (num_classes - 1.0)))) for c in range(num_classes)]


def _check_split_args(
    labels, num_classes, num_meta, corruption_type, corruption_prob, seed, coarse_labels, imbalance_factor
):
    if corruption_type not in CORRUPTION_TYPES:
        raise UserError(f"unknown corruption type {corruption_type!r}; choose one of {', '.join(CORRUPTION_TYPES)}")
    if not 0 <= corruption_prob <= 1:
        raise UserError(f"corruption_prob must lie in [0, 1], got {corruption_prob}")
    if corruption_type == "hierarchical" and coarse_labels is None:
        raise UserError(
            "hierarchical noise needs CIFAR-100's coarse classes: use --dataset cifar100 or another --corruption_type"
        )
    if not 0 <= seed < 2**32:
        raise UserError(f"seed must lie in [0, 2**32), got {seed}")
    if imbalance_factor is not None and not imbalance_factor >= 1:
        raise UserError(f"imb_factor (largest class / smallest class) must be at least 1, got {imbalance_factor}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(f"labels must lie in [0, {num_classes}), found {labels.min()}..{labels.max()}")
    if num_meta < 0 or num_meta % num_classes:
        raise UserError(
            f"num_meta ({num_meta}) must be a non-negative multiple of the number of classes ({num_classes}), so that the meta set is class-balanced"
        )
    smallest = np.bincount(labels, minlength=num_classes).min()
    if num_meta // num_classes > smallest:
        raise UserError(
            f"num_meta ({num_meta}) asks for {num_meta // num_classes} images per class, but the smallest class has {smallest}"
        )


def make_noisy_split(
    labels, num_classes, num_meta, corruption_type, corruption_prob, seed, coarse_labels=None, imbalance_factor=None
):
    """Split a training set into a clean meta set and a noisy training set.

    Returns (meta_idx, train_idx, noisy_labels) as NumPy arrays: indices into `labels`, train_idx
    in the original's split order, noisy_labels aligned with train_idx. Both sets come from one
    split, so they are disjoint for every seed (with seed 1 this is the original's split).
    """
    labels = np.asarray(labels, dtype=np.int64)
    _check_split_args(
        labels, num_classes, num_meta, corruption_type, corruption_prob, seed, coarse_labels, imbalance_factor
    )
    # Steps 1-2 of the protocol: per class, shuffle the ascending indices; the first num_meta/K go to the meta set.
    rng = np.random.RandomState(seed)
    per_class = num_meta // num_classes
    meta_parts, train_parts = [], []
    for j in range(num_classes):
        idx = np.flatnonzero(labels == j)
        rng.shuffle(idx)
        meta_parts.append(idx[:per_class])
        train_parts.append(idx[per_class:])
    if imbalance_factor is not None:
        counts = long_tail_counts(len(labels), num_classes, num_meta, imbalance_factor)
        train_parts = [part[:n] for part, n in zip(train_parts, counts)]
    meta_idx = np.concatenate(meta_parts).astype(np.int64)
    train_idx = np.concatenate(train_parts).astype(np.int64)
    # Step 3: flip and flip2 reseed the generator with 1 to draw C; the noise draws continue from there.
    if corruption_type in ("flip", "flip2"):
        rng = np.random.RandomState(1)
        C = _flip_C(corruption_prob, num_classes, rng, 1 if corruption_type == "flip" else 2)
    else:
        C = corruption_matrix(corruption_type, corruption_prob, num_classes, labels, coarse_labels)
    return meta_idx, train_idx, _draw_noisy_labels(labels[train_idx], C, rng)


def _draw_noisy_labels(clean, C, rng):
    # Step 4: one uniform per sample in split order, inverted through the row's normalised
    # cumulative sum: exactly what numpy's legacy choice(K, p=C[label]) does sample by sample.
    cdf = np.cumsum(C, axis=1)
    cdf /= cdf[:, -1:]
    u = rng.random_sample(len(clean))
    return (cdf[clean] <= u[:, None]).sum(axis=1).astype(np.int64)


# ---------------------------------------------------------------- reading the files on disk

# What the official CIFAR pickles hold besides dicts, lists, strings and numbers: NumPy arrays.
_CIFAR_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 pickles bytes at protocol 2
}


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only what the official CIFAR files contain, so that a data file, like a checkpoint, runs no code."""

    def find_class(self, module, name):
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR file")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):  # NumPy 2 renamed numpy.core
            module = "numpy._core." + module[len("numpy.core.") :]
        return super().find_class(module, name)


def _unpickle(path, name):
    try:
        with open(path, "rb") as f:
            return _CifarUnpickler(f, encoding="latin1").load()
    except OSError as e:
        raise UserError(f"cannot read {path} ({e.strerror}); check the file's permissions") from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        ImportError,
        IndexError,
        KeyError,
    ) as e:
        raise UserError(
            f"{path} is corrupt or not a CIFAR file ({type(e).__name__}: {str(e)[:100]}); delete the {name} folder and download it again"
        ) from None


def _cifar_entry(entry, path, name, folder):
    """(images N x 3 x 32 x 32, fine labels, coarse labels) of one unpickled CIFAR file, its types checked."""
    fine_key = "labels" if name == "cifar10" else "fine_labels"
    bad = f"{path} is corrupt ({{}}); delete the {folder} folder and download it again"
    if not isinstance(entry, dict) or "data" not in entry or fine_key not in entry:
        raise UserError(bad.format("not a dict with data and labels"))
    data = entry["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        kind = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise UserError(bad.format(f"its images are {kind}, not uint8 rows of 3072 pixels"))
    try:
        fine = np.asarray(entry[fine_key], dtype=np.int64)
        coarse = np.asarray(entry.get("coarse_labels", []), dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise UserError(bad.format(f"bad labels: {e}")) from None
    return data.reshape(-1, 3, 32, 32), fine, coarse


# The folders the official archives unpack to, and their training and test files (torchvision's too).
CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]),
    "cifar100": ("cifar-100-python", ["train"], ["test"]),
}


def _cifar_arrays(root, name, train, download):
    """(images N x 32 x 32 x 3 uint8, fine labels, coarse labels or None) of CIFAR on disk."""
    base, train_files, test_files = CIFAR_FILES[name]
    folder = os.path.join(root, base)
    files = train_files if train else test_files
    if download and not all(os.path.exists(os.path.join(folder, f)) for f in files):
        import torchvision.datasets as tvd  # only to download: importing torchvision takes a second

        tv_class = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
        with _download_lock(root):  # one download however many runs start at once; the others wait, then read
            if not all(os.path.exists(os.path.join(folder, f)) for f in files):
                _download(lambda: tv_class(root, train=True, download=True), root, name)
    images, fine, coarse = [], [], []
    for f in files:
        path = os.path.join(folder, f)
        if not os.path.exists(path):
            raise UserError(
                f"{name} not found: no {path}; pass --data_path with the folder that holds {base}/, or download it on a connected machine (python load_corrupted_data.py --dataset {name} --download)"
            )
        x, y, c = _cifar_entry(_unpickle(path, base), path, name, base)
        images.append(x)
        fine.append(y)
        coarse.append(c)
    images = np.concatenate(images).transpose(0, 2, 3, 1)  # N x H x W x C, as the original
    fine = np.concatenate(fine)
    num_classes = 10 if name == "cifar10" else 100
    if len(fine) != len(images) or fine.size and (fine.min() < 0 or fine.max() >= num_classes):
        raise UserError(f"{folder} is corrupt (labels do not match the images); delete it and download it again")
    return np.ascontiguousarray(images), fine, (np.concatenate(coarse) if name == "cifar100" else None)


@contextlib.contextmanager
def _download_lock(root):
    try:
        os.makedirs(root, exist_ok=True)
        f = open(os.path.join(root, ".download.lock"), "a")
    except OSError as e:
        raise UserError(f"cannot write to {root} ({e.strerror}); pass a writable --data_path") from None
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _download(fetch, root, name):
    # torchvision downloads the archive and checks its MD5 before extracting it.
    try:
        fetch()
    except (OSError, RuntimeError) as e:
        raise UserError(
            f"could not download {name} into {root} ({str(e).splitlines()[0][:120]}); download it on a connected machine and pass --data_path"
        ) from None


def _read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
        ndim = raw[3]
        shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
        if raw[:3] != b"\x00\x00\x08" or len(raw) != 4 + 4 * ndim + int(np.prod(shape)):
            raise ValueError("bad header or length")
    except (OSError, EOFError, ValueError, IndexError, zlib.error) as e:
        raise UserError(
            f"{path} is corrupt ({e}); reinstall dataset-fashion-mnist or copy the idx files again"
        ) from None
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _fashion_files(root, train):
    """The idx files in root, or in root/FashionMNIST/raw where torchvision downloads them."""
    prefix = "train" if train else "t10k"
    paths = []
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        candidates = [
            os.path.join(d, f"{prefix}-{kind}{ext}")
            for d in (root, os.path.join(root, "FashionMNIST", "raw"))
            for ext in (".gz", "")
        ]
        found = [p for p in candidates if os.path.exists(p)]
        if not found:
            return None, candidates[0]
        paths.append(found[0])
    return paths, None


def _fashion_arrays(root, train, download=False):
    """Fashion-MNIST from its idx files, zero-padded to 32 x 32 with three equal channels."""
    paths, missing = _fashion_files(root, train)
    if paths is None and download:
        import torchvision.datasets as tvd

        with _download_lock(root):
            if _fashion_files(root, train)[0] is None:
                _download(lambda: tvd.FashionMNIST(root, train=train, download=True), root, "fashionmnist")
        paths, missing = _fashion_files(root, train)
    if paths is None:
        raise UserError(
            f"fashionmnist not found: no {missing}; install it (apt-get install dataset-fashion-mnist), pass --download to fetch it into --data_path, or pass --data_path with the folder that holds the idx files"
        )
    images, labels = _read_idx(paths[0]), _read_idx(paths[1]).astype(np.int64)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(labels) != len(images) or labels.max(initial=0) > 9:
        raise UserError(f"{os.path.dirname(paths[0])} is corrupt (images and labels do not match)")
    padded = np.zeros((len(images), 32, 32, 3), dtype=np.uint8)
    padded[:, 2:30, 2:30, :] = images[..., None]
    return padded, labels, None


def load_arrays(dataset, root, train, download=False):
    """Images (N x 32 x 32 x 3 uint8), labels and coarse labels (or None) of a dataset on disk."""
    if dataset == "fashionmnist":
        return _fashion_arrays(root, train, download)
    return _cifar_arrays(root, dataset, train, download)


def default_root(dataset, data_path):
    """Fashion-MNIST reads from the Debian package's folder unless --data_path names another."""
    if dataset == "fashionmnist" and data_path in (None, "", "./data", "data") and os.path.isdir(FASHION_MNIST_DIR):
        return FASHION_MNIST_DIR
    return data_path


# ---------------------------------------------------------------- the datasets, original API


class _NoisyDataset(data.Dataset):
    """The original's dataset: meta=True gives the clean meta set, meta=False the noisy training set."""

    dataset = None
    num_classes = None

    def __init__(
        self,
        root="",
        train=True,
        meta=True,
        num_meta=1000,
        corruption_prob=0,
        corruption_type="unif",
        transform=None,
        target_transform=None,
        download=False,
        seed=1,
        imbalance_factor=None,
    ):
        self.root, self.train, self.meta = root, train, meta
        self.transform, self.target_transform = transform, target_transform
        self.corruption_prob, self.corruption_type = corruption_prob, corruption_type
        images, labels, coarse = load_arrays(self.dataset, default_root(self.dataset, root), train, download)
        if not train:
            self.test_data, self.test_labels = images, labels
            return
        meta_idx, train_idx, noisy = make_noisy_split(
            labels, self.num_classes, num_meta, corruption_type, corruption_prob, seed, coarse, imbalance_factor
        )
        self.meta_idx, self.train_idx = meta_idx, train_idx
        self.corruption_matrix = self.C = corruption_matrix(
            corruption_type, corruption_prob, self.num_classes, labels, coarse
        )
        self.indices = meta_idx if meta else train_idx  # into the original training set
        self.train_data = images[self.indices]
        self.clean_labels = labels[self.indices]
        self.train_labels = self.clean_labels.copy() if meta else noisy
        self.train_coarse_labels = None if coarse is None else coarse[self.indices]
        self.is_noisy = self.train_labels != self.clean_labels
        self.noise_rate = float(self.is_noisy.mean()) if len(self.is_noisy) else 0.0

    def __getitem__(self, index):
        if self.train:
            img, target = self.train_data[index], int(self.train_labels[index])
        else:
            img, target = self.test_data[index], int(self.test_labels[index])
        img = Image.fromarray(img)
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    def __len__(self):
        return len(self.train_data) if self.train else len(self.test_data)


class CIFAR10(_NoisyDataset):
    dataset, num_classes = "cifar10", 10


class CIFAR100(_NoisyDataset):
    dataset, num_classes = "cifar100", 100


class FashionMNIST(_NoisyDataset):
    dataset, num_classes = "fashionmnist", 10

    def __init__(self, root=FASHION_MNIST_DIR, **kwargs):
        super().__init__(root, **kwargs)


NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "fashionmnist": 10}


# ---------------------------------------------------------------- command line


def main(argv=None):
    p = argparse.ArgumentParser(description="Build a noisy split and print what it holds.")
    p.add_argument("--dataset", default="cifar10", choices=DATASETS, help="(default: cifar10)")
    p.add_argument(
        "--data_path",
        default="./data",
        help="folder holding the data (default: ./data; Fashion-MNIST: the Debian package's folder)",
    )
    p.add_argument(
        "--num_meta", type=int, default=1000, help="clean meta images, a multiple of the class count (default: 1000)"
    )
    p.add_argument(
        "--corruption_type", "-ctype", default="unif", help=f"one of {', '.join(CORRUPTION_TYPES)} (default: unif)"
    )
    p.add_argument("--corruption_prob", type=float, default=0.4, help="noise probability p in [0, 1] (default: 0.4)")
    p.add_argument(
        "--imb_factor",
        type=float,
        default=None,
        help="largest class / smallest class for long-tailed data (default: balanced)",
    )
    p.add_argument("--seed", type=int, default=1, help="(default: 1, the original's split)")
    p.add_argument("--download", action="store_true", help="download CIFAR with torchvision when it is missing")
    p.add_argument("--out", default=None, help="write meta_idx, train_idx, clean and noisy labels to this .npz")
    args = p.parse_args(argv)
    images, labels, coarse = load_arrays(args.dataset, default_root(args.dataset, args.data_path), True, args.download)
    K = NUM_CLASSES[args.dataset]
    meta_idx, train_idx, noisy = make_noisy_split(
        labels, K, args.num_meta, args.corruption_type, args.corruption_prob, args.seed, coarse, args.imb_factor
    )
    clean = labels[train_idx]
    print(f"{args.dataset}: {len(images)} training images -> meta {len(meta_idx)}, train {len(train_idx)}")
    print(
        f"actual share of wrong labels: {np.mean(noisy != clean):.4f} ({args.corruption_type}, p={args.corruption_prob})"
    )
    print("training images per class:", np.bincount(clean, minlength=K).tolist())
    if args.out:
        from run_files import save_npz_atomic

        save_npz_atomic(args.out, meta_idx=meta_idx, train_idx=train_idx, clean_labels=clean, noisy_labels=noisy)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    try:
        main()
    except UserError as e:
        sys.exit(f"error: {e}")
