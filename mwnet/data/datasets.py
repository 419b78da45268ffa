"""The original's Dataset classes, CIFAR10, CIFAR100 and FashionMNIST: the same constructor, attributes and
items (PIL images through the given transforms), built on the noise protocol (noise.py) and the files
(files.py), with what a study of noise needs added: the corruption matrix, the clean labels, a
noisy-or-not flag per sample. The training scripts do not use them (they batch on the device).
"""

import torch.utils.data as data
from PIL import Image

from mwnet.data.catalog import default_root, load_arrays
from mwnet.data.files import FASHION_MNIST_DIR
from mwnet.data.noise import corruption_matrix, make_noisy_split


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
