"""The image lists of a streamed dataset (Clothing1M's lists, a user's folder), read and checked into one shape
(Streamed) before anything is written: every file, and every size that can be checked once the classes are known.
Each dataset's reader is its spec's `read` (catalog.py), which hands it what it needs of the spec: this module
never imports the catalog back."""

from dataclasses import dataclass

import numpy as np
import torch

from mwnet.errors import UserError


@dataclass
class Streamed:
    """(paths, labels) of each set; the meta pool's (Clothing1M's clean validation list, a folder's meta split)
    or None; the training images' clean labels (-1 where unknown); the classes; the normalisation; what
    config.json records of a folder."""

    train: tuple
    pool: tuple | None
    test: tuple
    train_clean: np.ndarray
    classes: list
    mean_std: tuple
    folder: dict | None = None


def read_clothing1m_sets(args, workers, classes, mean_std):
    """Clothing1M's lists (clothing1m.py), its classes' names and normalisation as its spec gives them."""
    from mwnet.data.clothing1m import read_clothing1m

    sets, train_clean = read_clothing1m(args.data_path)
    return Streamed(sets["train"], sets["val"], sets["test"], train_clean, list(classes), mean_std)


def read_folder_sets(args, workers, pretrained_mean_std):
    """A user's folder (folder.py) with its normalisation: the pretrained weights' (ImageNet's, as the catalog
    gives it) with --pretrained, else measured."""
    from mwnet.data.folder import STATS_SAMPLE, read_folder
    from mwnet.method import method

    f = read_folder(args.data_path)
    k = len(f.classes)
    if args.meta_source == "selected" and args.num_meta % k:  # a clean meta set is the meta split, whole
        raise UserError(
            f"num_meta ({args.num_meta}) must be a non-negative multiple of the number of classes in {args.data_path} ({k}), so that the meta set is class-balanced"
        )
    if method(args.method).reads_meta and args.meta_source == "clean" and f.sets["meta"] is None:
        where = "meta/" if f.layout == "imagefolder" else "meta.csv"
        raise UserError(
            f"{args.data_path} holds no clean meta set ({where}); add one, or pass --meta_source selected to select it from the training images"
        )
    mean_std = pretrained_mean_std if args.pretrained else measure_mean_std(args, f.sets["train"][0], workers)
    record = {**f.describe(), "mean": list(mean_std[0]), "std": list(mean_std[1])}
    sampled = min(len(f.sets["train"][0]), STATS_SAMPLE)
    record["normalisation"] = "imagenet" if args.pretrained else f"measured on {sampled} training images"
    return Streamed(f.sets["train"], f.sets["meta"], f.sets["test"], f.train_clean, f.classes, mean_std, record)


def measure_mean_std(args, paths, workers):
    """Per-channel mean and std in [0, 1] of up to STATS_SAMPLE training images, evenly spaced through the list,
    resized and centre-cropped as the test images are; rounded to 4 places (the values config.json records)."""
    from mwnet.data.folder import sample_positions
    from mwnet.data.stream_loader import ImageFiles, StreamLoader

    at = sample_positions(len(paths))
    files = ImageFiles(
        args.data_path, [paths[i] for i in at], np.zeros(len(at), dtype=np.int64), args.image_size, False
    )
    loader = StreamLoader(files, 100, "cpu", (0.0,) * 3, (1.0,) * 3, workers=workers, channels_last=False)
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    for x, _, _ in loader.in_order():
        x = x.double()
        total += x.sum((0, 2, 3))
        squares += (x * x).sum((0, 2, 3))
    n = len(at) * args.image_size**2
    mean = total / n
    std = (squares / n - mean**2).clamp_min(0).sqrt().clamp_min(1 / 255)  # constant images: no division by 0
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())
