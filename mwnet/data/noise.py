"""The noise and split protocol of the original Meta-Weight-Net code, bit for bit (docs/internals.md, "Noise protocol").

The split and the label noise are one pure function over a label array, `make_noisy_split`: with seed 1 it
reproduces the original code's meta set, training set (images and order) and noisy labels exactly
(tests/test_noise_protocol.py checks it against a literal re-implementation of the original's loops).
It reads no files and imports nothing of torch; every draw comes from NumPy's legacy generator, as the
original's did. Change nothing here without that test.
"""

import numpy as np

from mwnet.errors import UserError

CORRUPTION_TYPES = ("unif", "flip", "flip2", "hierarchical")


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
    if imbalance_factor is not None and num_classes > 1:
        counts = long_tail_counts(len(labels), num_classes, num_meta, imbalance_factor)
        if min(counts) < 1:
            raise UserError(
                f"imb_factor {imbalance_factor:g} leaves class {counts.index(min(counts))} without a training image ({max(counts)} in the largest); pass a factor of at most {max(counts)}"
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
