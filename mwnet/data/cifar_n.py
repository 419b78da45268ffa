"""CIFAR-10N and CIFAR-100N (Wei et al., ICLR 2022): human re-annotations of the CIFAR training images, read safely.

The label files are the authors' (github.com/UCSC-REAL/cifar-10-100n, data/, licence CC BY-NC 4.0): torch.save
archives of a dict of NumPy int64 arrays of 50,000 labels, in the order of the python-version CIFAR training
batches, which this project reads. They are read without torch.load: the archive's pickle goes through the
same allow-list as CIFAR's own files (files.ArrayUnpickler), so a file runs no code, and every check that can
fail says which in one line: not the archive, no such variant, a wrong length or range, or clean labels that
are not the dataset's own (a file in another image order).
"""

import hashlib
import os
import pickle
import tempfile
import urllib.request
import zipfile

import numpy as np

from mwnet.data.catalog import NUM_CLASSES
from mwnet.data.files import ArrayUnpickler
from mwnet.errors import UserError
from mwnet.untrusted import labels_array

FILES = {"cifar10": "CIFAR-10_human.pt", "cifar100": "CIFAR-100_human.pt"}
SHA256 = {  # of the authors' files at commit 49df7d8 (../shared/data/cifar-n/README.md)
    "cifar10": "873e69c39cb9b5e97fb6bae2d60bb59b38a5cbc31d2b868f7903dcb2b9dd2310",
    "cifar100": "bd2d80409754d420292d622e15e25248ba21e37d27429efac49c8da723f44394",
}
URL = "https://github.com/UCSC-REAL/cifar-10-100n/raw/main/data/{}"
# --human_labels: the variant's key in the file, per dataset
VARIANTS = {
    "cifar10": {
        "aggre": "aggre_label",
        "worse": "worse_label",
        "random1": "random_label1",
        "random2": "random_label2",
        "random3": "random_label3",
    },
    "cifar100": {"noisy": "noisy_label"},
}
HUMAN_LABELS = ("aggre", "worse", "random1", "random2", "random3", "noisy")


def noise_file(dataset, data_path, given=None):
    """--noise_file, or the official file name under --data_path."""
    return given or os.path.join(data_path, FILES[dataset])


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(dataset, path):
    """Fetch the authors' file for `dataset` into `path`, its SHA-256 checked before it is moved into place."""
    url = URL.format(FILES[dataset])
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix="-" + os.path.basename(path))
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            while block := response.read(1 << 20):
                out.write(block)
        if sha256_of(tmp) != SHA256[dataset]:
            raise UserError(
                f"the file downloaded from {url} is not the expected one (its SHA-256 differs); try again later"
            )
        os.replace(tmp, path)
        tmp = None
    except OSError as e:  # urllib's errors are OSErrors
        raise UserError(
            f"could not download {url} ({str(e)[:100]}); download it on a connected machine and pass --noise_file"
        ) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def read_archive(path):
    """The dict a torch.save archive holds, unpickled through the allow-list (no tensors, no code)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(names) != 1:
                raise ValueError("no data.pkl inside")
            with archive.open(names[0]) as f:
                return ArrayUnpickler(f, encoding="latin1").load()
    except OSError as e:
        raise UserError(f"cannot read {path} ({e.strerror or e}); check the file") from None
    except (zipfile.BadZipFile, ValueError, EOFError) as e:
        raise UserError(f"{path} is not a CIFAR-N label file (not a torch.save archive: {str(e)[:80]})") from None
    except (pickle.UnpicklingError, AttributeError, ImportError, IndexError, KeyError, TypeError) as e:
        raise UserError(
            f"{path} is not a CIFAR-N label file (it holds more than label arrays: {str(e)[:80]})"
        ) from None


def read_human_labels(path, dataset, variant, train_labels):
    """(the variant's labels, aligned with the dataset's training images; the file's SHA-256), every field
    checked against the dataset's own training labels."""
    if not os.path.isfile(path):
        raise UserError(
            f"no CIFAR-N label file at {path}; pass --download to fetch it from {URL.format(FILES[dataset])}, or --noise_file with its path"
        )
    content = read_archive(path)
    key = VARIANTS[dataset].get(variant)
    if key is None:
        raise UserError(
            f"--human_labels {variant} is not a {dataset} variant; choose one of {', '.join(VARIANTS[dataset])}"
        )
    if not isinstance(content, dict) or "clean_label" not in content or key not in content:
        missing = "clean_label" if isinstance(content, dict) and key in content else key
        raise UserError(
            f"{path} has no {missing!r}: it is not the CIFAR-N file of {dataset} (pass the {FILES[dataset]} file)"
        )
    arrays = {
        name: labels_array(content[name], f"{path}: {name}", len(train_labels), NUM_CLASSES[dataset])
        for name in ("clean_label", key)
    }
    differ = int(np.sum(arrays["clean_label"] != np.asarray(train_labels)))
    if differ:
        raise UserError(
            f"{path}: its clean_label differs from the training labels under --data_path at {differ} of {len(train_labels)} images: the file is in another image order (TensorFlow datasets' order?) or for other data; use the authors' file with the python-version CIFAR"
        )
    return arrays[key], sha256_of(path)
