"""Reading the datasets' files safely: CIFAR's pickles through an allow-list, Fashion-MNIST's idx files,
and the one-at-a-time download of a missing dataset. Images come back as N x 32 x 32 x 3 uint8 arrays.
"""

import contextlib
import fcntl
import gzip
import os
import pickle
import zlib

import numpy as np

from mwnet.errors import UserError
from mwnet.untrusted import DAMAGED

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # the Debian package dataset-fashion-mnist


# What the official CIFAR pickles hold besides dicts, lists, strings and numbers: NumPy arrays.
_ARRAY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 pickles bytes at protocol 2
}


class ArrayUnpickler(pickle.Unpickler):
    """Unpickles only what the official CIFAR files (and CIFAR-N's label files) contain: dicts, lists, strings,
    numbers and NumPy arrays, so that a data file, like a checkpoint, runs no code."""

    def find_class(self, module, name):
        if (module, name) not in _ARRAY_GLOBALS:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a data file")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):  # NumPy 2 renamed numpy.core
            module = "numpy._core." + module[len("numpy.core.") :]
        return super().find_class(module, name)


def _unpickle(path, name):
    try:
        with open(path, "rb") as f:
            return ArrayUnpickler(f, encoding="latin1").load()
    except OSError as e:
        raise UserError(f"cannot read {path} ({e.strerror}); check the file's permissions") from None
    except (pickle.UnpicklingError, *DAMAGED) as e:
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
    if name == "cifar100" and (
        coarse.shape != fine.shape or coarse.size and not 0 <= coarse.min() <= coarse.max() < 20
    ):
        # the coarse classes make hierarchical noise; without them it would silently be no noise at all
        raise UserError(bad.format("its coarse labels (20 classes, one per image) are missing or do not match"))
    return data.reshape(-1, 3, 32, 32), fine, coarse


# The folders the official archives unpack to, and their training and test files (torchvision's too).
CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]),
    "cifar100": ("cifar-100-python", ["train"], ["test"]),
}


def cifar_arrays(root, name, train, download):
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
    """One download at a time into `root`; the lock file goes when the download ends, however it ends (and so
    does `root` if it was made for it and stayed empty). A process still waiting on the removed file then
    finds the data there, or tries the download itself."""
    created = not os.path.isdir(root)
    path = os.path.join(root, ".download.lock")
    try:
        os.makedirs(root, exist_ok=True)
        f = open(path, "a")
    except OSError as e:
        raise UserError(f"cannot write to {root} ({e.strerror}); pass a writable --data_path") from None
    try:
        with f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(root)


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


def fashion_arrays(root, train, download=False):
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


def fashion_root(data_path):
    """Fashion-MNIST reads from the Debian package's folder unless --data_path names another."""
    if data_path in (None, "", "./data", "data") and os.path.isdir(FASHION_MNIST_DIR):
        return FASHION_MNIST_DIR
    return data_path


def path_bytes(paths):
    """Paths as one array of their file-system bytes (os.fsencode): any name the file system allows, UTF-8 or not
    (os.fsdecode gives the same str back), at one array's cost for a million of them."""
    return np.asarray([os.fsencode(p) for p in paths], dtype=np.bytes_)


def first_missing(root, paths):
    """The position of the first of `paths` (relative to root) that does not exist, or None: one directory
    listing per folder rather than a stat per image, so that a million images take seconds."""
    present = {}
    for i, rel in enumerate(paths):
        folder, name = os.path.split(rel)
        if folder not in present:
            try:
                present[folder] = set(os.listdir(os.path.join(root, folder)))
            except OSError:
                present[folder] = set()
        if name not in present[folder]:
            return i
    return None


def check_listed(root, paths, missing):
    """Every listed image exists (first_missing); else one line, missing(its position, its path under root)."""
    i = first_missing(root, paths)
    if i is not None:
        raise UserError(missing(i, os.path.join(root, paths[i])))
