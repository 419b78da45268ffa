"""A fixed training subset (--train_subset, the laptop protocol's): the same images for every seed and row.

Per class, the first n/K images of a permutation drawn with a fixed seed, so that every run trains on the same
images whatever its --seed; the images outside the subset form the pool the clean meta set is taken from, so
that no training image is also a meta image. The noise protocol (noise.py) then runs unchanged on each part.
"""

import hashlib

import numpy as np

SUBSET_SEED = 0  # fixed: the subset does not follow --seed


def fixed_subset(labels, num_classes, size):
    """(subset, pool): ascending indices into `labels` of the class-balanced subset and of the other images."""
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.RandomState(SUBSET_SEED)
    per_class = size // num_classes
    chosen = []
    for j in range(num_classes):
        idx = np.flatnonzero(labels == j)
        if len(idx) < per_class:
            return None, None
        chosen.append(rng.permutation(idx)[:per_class])
    subset = np.sort(np.concatenate(chosen))
    pool = np.setdiff1d(np.arange(len(labels)), subset)
    return subset, pool


def describe(subset):
    """What config.json records of a subset: its size, the seed that drew it, a digest of its indices."""
    digest = hashlib.sha256(np.ascontiguousarray(subset, dtype=np.int64).tobytes()).hexdigest()[:16]
    return {"images": int(len(subset)), "drawn_with_seed": SUBSET_SEED, "indices_sha256": digest}
