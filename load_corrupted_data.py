"""The original's load_corrupted_data.py: noisy and long-tailed CIFAR-10/100 (and Fashion-MNIST), each with a
clean, class-balanced meta set. Its contents live in mwnet/data: the noise protocol, bit for bit the
original's (noise.py), the files (files.py), the Dataset classes (datasets.py).

    from load_corrupted_data import CIFAR10, CIFAR100, make_noisy_split
    train = CIFAR10("./data", train=True, meta=False, num_meta=1000, corruption_prob=0.4, corruption_type="unif")

Build and inspect a split from the command line (writes nothing unless --out is given):
    python load_corrupted_data.py --dataset fashionmnist --corruption_type flip --corruption_prob 0.4
    python load_corrupted_data.py --dataset cifar10 --data_path ./data --imb_factor 100 --num_meta 100
"""

import sys

from mwnet.data.catalog import DATASETS, MEAN_STD, NUM_CLASSES, default_root, load_arrays
from mwnet.data.datasets import CIFAR10, CIFAR100, FashionMNIST
from mwnet.data.files import FASHION_MNIST_DIR
from mwnet.data.noise import (
    CORRUPTION_TYPES,
    corruption_matrix,
    flip_labels_C,
    flip_labels_C_two,
    hierarchical_C,
    long_tail_counts,
    make_noisy_split,
    uniform_mix_C,
)
from mwnet.errors import UserError
from mwnet.tools.split import command, main

__all__ = [
    "CIFAR10",
    "CIFAR100",
    "FashionMNIST",
    "make_noisy_split",
    "corruption_matrix",
    "uniform_mix_C",
    "flip_labels_C",
    "flip_labels_C_two",
    "hierarchical_C",
    "long_tail_counts",
    "load_arrays",
    "default_root",
    "CORRUPTION_TYPES",
    "DATASETS",
    "NUM_CLASSES",
    "MEAN_STD",
    "FASHION_MNIST_DIR",
    "UserError",
    "main",
]

if __name__ == "__main__":
    sys.exit(command())
