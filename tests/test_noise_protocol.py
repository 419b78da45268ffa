"""make_noisy_split against an independent, literal implementation of the original's protocol."""

import numpy as np
import pytest

from mwnet.data.noise import corruption_matrix, long_tail_counts, make_noisy_split
from mwnet.errors import UserError


def original_protocol(labels, k, num_meta, ctype, p, seed, coarse=None):
    """PAPER.md's protocol as the original code runs it: Python lists, the global legacy generator,
    one choice() per sample. The meta set is split with seed 1, the training set with `seed`."""

    def split(s):
        np.random.seed(s)
        meta, train = [], []
        for j in range(k):
            ids = [i for i, y in enumerate(labels) if y == j]
            np.random.shuffle(ids)
            meta.extend(ids[: num_meta // k])
            train.extend(ids[num_meta // k :])
        return meta, train

    meta, _ = split(1)
    _, train = split(seed)
    rows = np.arange(k)
    if ctype == "unif":
        C = p * np.full((k, k), 1 / k) + (1 - p) * np.eye(k)
    elif ctype in ("flip", "flip2"):
        np.random.seed(1)
        C = np.eye(k) * (1 - p)
        for i in range(k):
            if ctype == "flip":
                C[i][np.random.choice(rows[rows != i])] = p
            else:
                C[i][np.random.choice(rows[rows != i], 2, replace=False)] = p / 2
    else:
        C = np.eye(k) * (1 - p)
        groups = {}
        for y, c in zip(labels, coarse):
            groups.setdefault(c, set()).add(y)
        for members in groups.values():
            members = sorted(members)
            for j, y in enumerate(members):
                others = members[:j] + members[j + 1 :]
                C[y, others] += p * 1 / len(others)
    noisy = [np.random.choice(k, p=C[labels[i]]) for i in train]
    return np.array(meta), np.array(train), np.array(noisy), C


def synthetic_labels(k, per_class, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(k), per_class))
    coarse = (rng.permutation(k) // 5)[labels] if k == 100 else None
    return labels, coarse


CASES = [
    (10, 400, 1000, "unif", 0.4, 1),
    (10, 400, 1000, "unif", 0.6, 7),
    (10, 400, 1000, "flip", 0.4, 1),
    (10, 400, 1000, "flip", 0.2, 3),
    (10, 400, 1000, "flip2", 0.4, 1),
    (10, 400, 100, "unif", 0.0, 2),
    (100, 40, 1000, "unif", 0.4, 1),
    (100, 40, 1000, "flip", 0.4, 5),
    (100, 40, 1000, "flip2", 0.2, 1),
    (100, 40, 1000, "hierarchical", 0.4, 1),
    (100, 40, 1000, "hierarchical", 0.6, 11),
]


@pytest.mark.parametrize("k,per_class,num_meta,ctype,p,seed", CASES)
def test_matches_original_bit_for_bit(k, per_class, num_meta, ctype, p, seed):
    labels, coarse = synthetic_labels(k, per_class, seed=k + seed)
    meta, train, noisy = make_noisy_split(labels, k, num_meta, ctype, p, seed, coarse_labels=coarse)
    ref_meta, ref_train, ref_noisy, ref_C = original_protocol(labels, k, num_meta, ctype, p, seed, coarse)
    np.testing.assert_array_equal(train, ref_train)  # same images in the same order, for every seed
    np.testing.assert_array_equal(noisy, ref_noisy)
    np.testing.assert_array_equal(corruption_matrix(ctype, p, k, labels, coarse), ref_C)
    if seed == 1:
        np.testing.assert_array_equal(meta, ref_meta)
    else:
        # The original's meta set overlaps its training set when seed != 1; ours never does.
        assert np.intersect1d(ref_meta, ref_train).size > 0
        assert np.intersect1d(meta, train).size == 0


@pytest.mark.parametrize("seed", [1, 2, 123, 2**31])
@pytest.mark.parametrize("k,num_meta", [(10, 1000), (100, 1000), (10, 100)])
def test_split_is_disjoint_covering_and_balanced(seed, k, num_meta):
    labels, _ = synthetic_labels(k, 5000 // k)
    meta, train, noisy = make_noisy_split(labels, k, num_meta, "unif", 0.4, seed)
    assert np.intersect1d(meta, train).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([meta, train])), np.arange(len(labels)))
    np.testing.assert_array_equal(np.bincount(labels[meta], minlength=k), [num_meta // k] * k)
    assert len(noisy) == len(train) and noisy.min() >= 0 and noisy.max() < k


def test_different_seeds_give_different_splits():
    labels, _ = synthetic_labels(10, 500)
    a = make_noisy_split(labels, 10, 1000, "unif", 0.4, 1)
    b = make_noisy_split(labels, 10, 1000, "unif", 0.4, 2)
    assert not np.array_equal(a[1], b[1]) and not np.array_equal(a[2], b[2])


@pytest.mark.parametrize("factor", [200, 100, 10, 1])
@pytest.mark.parametrize("k", [10, 100])
def test_long_tailed_class_counts(k, factor):
    labels, _ = synthetic_labels(k, 50000 // k)
    num_meta = 10 * k
    meta, train, noisy = make_noisy_split(labels, k, num_meta, "unif", 0.0, 1, imbalance_factor=factor)
    counts = np.bincount(labels[train], minlength=k)
    img_max = (50000 - num_meta) / k
    assert counts[0] == int(img_max)
    assert counts[-1] == int(img_max / factor)  # the smallest class is the largest over the factor
    assert all(counts[c] == int(img_max * (1 / factor) ** (c / (k - 1))) for c in range(k))
    assert np.all(np.diff(counts) <= 0)
    np.testing.assert_array_equal(counts, long_tail_counts(50000, k, num_meta, factor))
    np.testing.assert_array_equal(np.bincount(labels[meta], minlength=k), [10] * k)
    assert np.intersect1d(meta, train).size == 0
    np.testing.assert_array_equal(noisy, labels[train])  # p = 0: clean


def test_long_tail_combines_with_noise():
    labels, _ = synthetic_labels(10, 5000)
    _, train, noisy = make_noisy_split(labels, 10, 100, "flip", 0.4, 1, imbalance_factor=50)
    assert len(train) == sum(long_tail_counts(50000, 10, 100, 50))
    assert abs(np.mean(noisy != labels[train]) - 0.4) < 0.02


@pytest.mark.parametrize(
    "ctype,k,p,expected",
    [
        ("unif", 10, 0.4, 0.36),
        ("unif", 100, 0.6, 0.594),
        ("flip", 10, 0.4, 0.4),
        ("flip2", 10, 0.2, 0.2),
        ("hierarchical", 100, 0.4, 0.4),
    ],
)
def test_noise_rates_and_transitions(ctype, k, p, expected):
    labels, coarse = synthetic_labels(k, 50000 // k)
    _, train, noisy = make_noisy_split(labels, k, 1000, ctype, p, 1, coarse_labels=coarse)
    clean = labels[train]
    assert abs(np.mean(noisy != clean) - expected) < 0.01  # ~49k draws: 3 sigma is about 0.007
    C = corruption_matrix(ctype, p, k, labels, coarse)
    np.testing.assert_allclose(C.sum(axis=1), 1.0)
    # Every observed transition is allowed by C, and the empirical matrix approaches C.
    observed = np.zeros((k, k))
    np.add.at(observed, (clean, noisy), 1)
    assert np.all(C[observed > 0] > 0)
    empirical = observed / observed.sum(axis=1, keepdims=True)
    assert np.abs(empirical - C).max() < (0.05 if k == 10 else 0.2)


def test_flip_structure():
    C1 = corruption_matrix("flip", 0.4, 10)
    C2 = corruption_matrix("flip2", 0.4, 10)
    off1, off2 = C1 - np.diag(np.diag(C1)), C2 - np.diag(np.diag(C2))
    assert np.all((off1 > 0).sum(axis=1) == 1) and np.allclose(off1.max(axis=1), 0.4)
    assert np.all((off2 > 0).sum(axis=1) == 2) and np.allclose(off2[off2 > 0], 0.2)
    np.testing.assert_allclose(np.diag(C1), 0.6)


def test_hierarchical_stays_in_coarse_class():
    labels, coarse = synthetic_labels(100, 100)
    _, train, noisy = make_noisy_split(labels, 100, 1000, "hierarchical", 0.6, 3, coarse_labels=coarse)
    fine_to_coarse = np.zeros(100, dtype=int)
    fine_to_coarse[labels] = coarse
    np.testing.assert_array_equal(fine_to_coarse[noisy], fine_to_coarse[labels[train]])
    assert np.mean(noisy != labels[train]) > 0.5


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        ({"corruption_type": "gauss"}, "unknown corruption type"),
        ({"corruption_prob": 1.5}, "[0, 1]"),
        ({"corruption_prob": -0.1}, "[0, 1]"),
        ({"corruption_type": "hierarchical"}, "cifar100"),
        ({"num_meta": 1001}, "multiple of the number of classes"),
        ({"num_meta": 5000}, "smallest class has 400"),
        ({"imbalance_factor": 0.5}, "at least 1"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_raise_user_error(kwargs, fragment):
    labels, _ = synthetic_labels(10, 400)
    args = dict(num_meta=1000, corruption_type="unif", corruption_prob=0.4, seed=1)
    args.update(kwargs)
    with pytest.raises(UserError) as info:
        make_noisy_split(labels, 10, **args)
    assert fragment in str(info.value)
