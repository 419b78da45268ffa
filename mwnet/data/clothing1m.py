"""Clothing1M (Xiao et al., CVPR 2015): its list and label files, read and checked before anything is written.

A user's copy (its terms forbid redistribution) is a folder holding images/ and the dataset's text files:
    noisy_label_kv.txt, clean_label_kv.txt      lines "<image path> <label>", labels 0-13
    noisy_train_key_list.txt                    the noisy training set (about 1,037,000 images)
    clean_val_key_list.txt                      clean validation images (about 14,300): the meta set's pool
    clean_test_key_list.txt                     clean test images (about 10,500)
clean_train_key_list.txt (about 47,500 clean training images) is never read: the paper does not use them.
Every file is checked: a missing file, a line that does not parse, a label outside 0-13, a listed image
without a label, or an image path that does not exist is one line naming the file and the line.
"""

import os

import numpy as np

from mwnet.data.files import check_listed
from mwnet.errors import UserError

NUM_CLASSES = 14
LABELS = {"noisy": "noisy_label_kv.txt", "clean": "clean_label_kv.txt"}
LISTS = {"train": "noisy_train_key_list.txt", "val": "clean_val_key_list.txt", "test": "clean_test_key_list.txt"}


def _lines(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        raise UserError(
            f"{path} does not exist; --data_path must be the Clothing1M folder that holds images/ and its list files"
        ) from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a text file of Clothing1M's; copy it again from the dataset") from None
    except OSError as e:
        raise UserError(f"cannot read {path} ({e.strerror or e}); check the file") from None


def read_labels(path):
    """{image path: label} of a "<path> <label>" file."""
    labels = {}
    for number, line in enumerate(_lines(path), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
            raise UserError(f"{path}, line {number}: {line[:80]!r} is not '<image path> <label>'")
        label = int(fields[1])
        if not 0 <= label < NUM_CLASSES:
            raise UserError(f"{path}, line {number}: label {label} is outside 0-{NUM_CLASSES - 1}")
        labels[fields[0]] = label
    return labels


def read_list(path, labels, labels_path):
    """(image paths, their labels) of a key list, every image labelled in `labels`."""
    paths = []
    for number, line in enumerate(_lines(path), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 1:
            raise UserError(f"{path}, line {number}: {line[:80]!r} is not one image path")
        if os.path.isabs(fields[0]) or ".." in fields[0].split("/"):
            raise UserError(
                f"{path}, line {number}: {fields[0][:80]} leads out of the dataset's folder; list paths under it"
            )
        if fields[0] not in labels:
            raise UserError(f"{path}, line {number}: {fields[0]} has no label in {labels_path}")
        paths.append(fields[0])
    if not paths:
        raise UserError(f"{path} lists no image; it is empty or cut short: copy it again from the dataset")
    return paths, np.fromiter((labels[p] for p in paths), dtype=np.int64, count=len(paths))


def check_images(root, paths, list_path):
    """Every listed image exists."""
    check_listed(root, paths, lambda i, path: f"{list_path}: image {i + 1}, {path}, does not exist")


def read_clothing1m(root):
    """{"train", "val", "test": (paths, labels)} and the clean labels of the training images where the dataset
    has both (-1 elsewhere)."""
    files = {name: os.path.join(root, f) for name, f in {**LABELS, **LISTS}.items()}
    noisy, clean = read_labels(files["noisy"]), read_labels(files["clean"])
    sets = {"train": read_list(files["train"], noisy, files["noisy"])}
    for name in ("val", "test"):
        sets[name] = read_list(files[name], clean, files["clean"])
    for name, (paths, _) in sets.items():
        check_images(root, paths, files[name])
    train_clean = np.fromiter((clean.get(p, -1) for p in sets["train"][0]), dtype=np.int64, count=len(sets["train"][0]))
    return sets, train_clean
