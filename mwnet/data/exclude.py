"""--exclude RUN_OR_FILE --exclude_top K: train again without the K most suspect training labels of a run, the
loop a practitioner runs next (README, "Your own data"). The K first rows of its samples.csv name them by their
index in the training set; each must be a training sample of this run with the same given label, or the file was
made from other data and is refused.
"""

import numpy as np

from mwnet.errors import UserError
from mwnet.runs.run_files import SAMPLE_COLUMNS, iter_samples


def top_suspects(path, k):
    """(index, given label) of the first k rows of a samples file (or of the run directory holding one)."""
    at, label = SAMPLE_COLUMNS.index("index"), SAMPLE_COLUMNS.index("given_label")
    index, given = [], []
    for row in iter_samples(path):
        if len(index) == k:
            break
        try:
            index.append(int(row[at]))
            given.append(int(row[label]))
        except ValueError:
            raise UserError(
                f"{path}: row {len(index) + 1} has no whole-number index and label; the file is damaged"
            ) from None
    if len(index) < k:
        raise UserError(f"--exclude_top {k}: {path} lists {len(index)} samples; pass a smaller --exclude_top")
    return np.asarray(index, dtype=np.int64), np.asarray(given, dtype=np.int64)


def drop(args, train_idx, noisy):
    """The training set less the excluded samples: (train_idx, noisy labels, kept positions)."""
    index, given = top_suspects(args.exclude, args.exclude_top)
    where = {int(i): p for p, i in enumerate(train_idx)}
    for i, label in zip(index, given, strict=True):
        p = where.get(int(i))
        if p is None or noisy[p] != label:
            said = "is not" if p is None else f"has label {noisy[p]}, not {label},"
            raise UserError(
                f"--exclude {args.exclude}: training sample {i} {said} in this run's training set; the file was made from other data or another split: pass a samples.csv of a run on the same data, noise and seed"
            )
    keep = np.flatnonzero(~np.isin(train_idx, index))
    return train_idx[keep], noisy[keep], keep
