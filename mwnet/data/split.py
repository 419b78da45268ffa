"""A run's data in one shape, whether its images sit in memory or are streamed from files: the training images with
their noisy and clean labels, the clean meta set, the test set, and what config.json records of them
(engine/components.py reads each dataset into a Split; build_data makes the loaders from it, one path for both).

An image source (InMemory, OnDisk) knows how its images are batched on the device; a loader over some of them, with
labels, is `source.take(positions).loader(labels, ...)`.
"""

from dataclasses import dataclass

import numpy as np

from mwnet.data.device_loader import DeviceLoader

# on the CPU, with freed memory kept, batches of 100 to 1000 evaluate in the same time (docs/speed.md)
EVAL_BATCH = {"cuda": 1000, "cpu": 100}


@dataclass(frozen=True)
class InMemory:
    """Images held in memory (N x 32 x 32 x 3 uint8), batched on the device by DeviceLoader."""

    images: np.ndarray
    mean_std: tuple
    device: object
    batch_size: int

    def __len__(self):
        return len(self.images)

    def take(self, positions):
        return InMemory(self.images[positions], self.mean_std, self.device, self.batch_size)

    def loader(self, labels, sampling="epoch", seed=0, augment=False):
        mean, std = self.mean_std
        return DeviceLoader(
            self.images,
            labels,
            self.batch_size,
            sampling=sampling,
            seed=seed,
            device=self.device,
            mean=mean,
            std=std,
            channels_last=True,
            augment=augment,
        )

    def evaluation_loader(self, labels):
        mean, std = self.mean_std
        batch = EVAL_BATCH.get(self.device.type, 100)
        return DeviceLoader(
            self.images, labels, batch, device=self.device, mean=mean, std=std, augment=False, channels_last=True
        )


@dataclass(frozen=True)
class OnDisk:
    """Images listed by path under root, decoded by worker processes and batched on the device (StreamLoader)."""

    root: str
    paths: list
    image_size: int
    mean_std: tuple
    device: object
    batch_size: int
    workers: int

    def __len__(self):
        return len(self.paths)

    def take(self, positions):
        paths = [self.paths[i] for i in positions]
        return OnDisk(self.root, paths, self.image_size, self.mean_std, self.device, self.batch_size, self.workers)

    def loader(self, labels, sampling="epoch", seed=0, augment=False):
        from mwnet.data.stream_loader import ImageFiles, StreamLoader  # torchvision: imported for streamed data only

        files = ImageFiles(self.root, self.paths, labels, self.image_size, augment)  # unaugmented: centre crops
        mean, std = self.mean_std
        return StreamLoader(
            files,
            self.batch_size,
            sampling=sampling,
            seed=seed,
            device=self.device,
            mean=mean,
            std=std,
            workers=self.workers,
        )

    def evaluation_loader(self, labels):
        from mwnet.data.stream_loader import ImageFiles, StreamLoader

        files = ImageFiles(self.root, self.paths, labels, self.image_size, train=False)
        batch = 256 if self.device.type == "cuda" else self.batch_size
        return StreamLoader(files, batch, self.device, *self.mean_std, workers=self.workers)


@dataclass(frozen=True)
class Split:
    """The training images (in samples.csv's order: train_idx, their positions in the dataset's training set or
    list) with the labels trained on and the clean ones (-1 where unknown); the clean meta set (its positions in
    the set it was drawn from; no images where the run takes none); the test set; a digest of what the run read,
    which a resumed run compares; the classes' names; and what config.json records of the data."""

    train: object
    noisy: np.ndarray
    clean: np.ndarray
    train_idx: np.ndarray
    meta: object
    meta_labels: np.ndarray
    meta_idx: np.ndarray
    test: object
    test_labels: np.ndarray
    fingerprint: str
    classes: list
    noise_source: dict | None = None  # -ctype human: the label file, its SHA-256, the variant
    subset: dict | None = None  # --train_subset: what config.json records of it (data/subset.py)
    folder: dict | None = None  # --dataset folder: what config.json records of it (data/folder.py)
    paths: list | None = None  # a streamed dataset's training images, relative to --data_path
