"""Batches streamed from image files, for a dataset too large to sit on the device (Clothing1M): the same
interface to the loop as DeviceLoader (next_batch(), state_dict(), load_state_dict(), in_order(), len(),
labels, device), so that engine/training.py keeps its shape.

torch.utils.data worker processes read and decode the JPEGs (Pillow, through torchvision's transforms; torchvision
0.29 deprecates its own decoders for TorchCodec), resize the shorter side to 256
and crop 224 at random with a random horizontal flip for training (the centre for evaluation), and hand over
uint8 crops in pinned memory; the normalisation (ImageNet's mean and std) happens on the device. Which images
form batch b, and each image's crop and flip, follow from (seed, b) alone, never from a worker's state: the
loader's position is the number of batches consumed, which a checkpoint holds, so a resumed run draws the same
images with the same augmentations whatever the number of workers. An image that cannot be decoded stops
the run with one line naming it.
"""

import os

import numpy as np
import torch
import torchvision.transforms.functional as TF
from torch.utils.data import DataLoader, Dataset

from mwnet.data.files import path_bytes
from mwnet.data.images import UnreadableImage, read_rgb
from mwnet.errors import UserError


def _seed(*words):
    """A 64-bit seed of a torch.Generator from integers, the same on every machine."""
    return int(np.random.SeedSequence(list(words)).generate_state(1, dtype=np.uint64)[0])


class ImageFiles(Dataset):
    """Images listed by path (under root) with their labels; an item is keyed by (index, its random draw)."""

    def __init__(self, root, paths, labels, size=224, train=True):
        self.root = root
        self.paths = path_bytes(paths)  # one array, shared by forked workers without copies
        self.labels = np.asarray(labels, dtype=np.int64)
        self.size, self.train = size, train
        self.resize = round(size * 256 / 224)  # 256 for the usual 224 crops

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, key):
        index, draw = key
        path = os.path.join(self.root, os.fsdecode(self.paths[index]))
        label = int(self.labels[index])
        try:
            image = TF.pil_to_tensor(TF.resize(read_rgb(path), self.resize))  # bilinear, antialiased
        except UnreadableImage as e:
            return torch.zeros(3, self.size, self.size, dtype=torch.uint8), label, index, str(e)
        height, width = image.shape[-2:]
        if self.train:
            g = torch.Generator().manual_seed(draw)
            top = int(torch.randint(0, height - self.size + 1, (1,), generator=g))
            left = int(torch.randint(0, width - self.size + 1, (1,), generator=g))
            image = image[:, top : top + self.size, left : left + self.size]
            if torch.rand(1, generator=g).item() < 0.5:
                image = image.flip(-1)
        else:
            image = TF.center_crop(image, [self.size, self.size])
        return image.contiguous(), label, index, ""


class Keys:
    """The keys of batch b: its images (shuffled passes, or a fresh random draw each batch) and a random draw
    for each image's crop and flip, from (seed, b) alone."""

    def __init__(self, n, batch_size, sampling, seed):
        self.n, self.batch_size, self.sampling, self.seed = n, batch_size, sampling, seed
        self.per_epoch = -(-n // batch_size)
        self._epoch, self._perm = None, None

    def batch(self, b):
        if self.sampling == "random":
            g = torch.Generator().manual_seed(_seed(self.seed, b, 0))
            idx = torch.randperm(self.n, generator=g)[: self.batch_size]
        else:
            epoch, position = divmod(b, self.per_epoch)
            if epoch != self._epoch:
                g = torch.Generator().manual_seed(_seed(self.seed, epoch, 1))
                self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g)
            idx = self._perm[position * self.batch_size : (position + 1) * self.batch_size]
        draws = np.random.SeedSequence([self.seed, b, 2]).generate_state(len(idx), dtype=np.uint64)
        return [(int(i), int(d)) for i, d in zip(idx, draws, strict=True)]


class _Batches:
    """The endless stream of batch keys from batch `start` on (a DataLoader's batch_sampler); with part
    (rank, size), this process's slice of each batch."""

    def __init__(self, keys, start, part=(0, 1)):
        self.keys, self.start, self.part = keys, start, part

    def __iter__(self):
        b = self.start
        rank, size = self.part
        while True:
            keys = self.keys.batch(b)
            yield keys[rank * len(keys) // size : (rank + 1) * len(keys) // size]
            b += 1


class StreamLoader:
    def __init__(self, files, batch_size, device, mean, std, sampling="epoch", seed=0, workers=0, channels_last=True):
        self.files, self.batch_size, self.workers = files, batch_size, workers
        self.device = torch.device(device)
        self.labels = torch.as_tensor(files.labels).to(self.device)
        self.keys = Keys(len(files), batch_size, sampling, seed)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.consumed, self._batches = 0, None
        self.part = (0, 1)  # (rank, processes): a process of a torchrun run loads its slice of each batch

    def __len__(self):
        """Batches in one pass over the images."""
        return self.keys.per_epoch

    def _loader(self, batch_sampler):
        extra = {"prefetch_factor": 4, "persistent_workers": True} if self.workers else {}
        return DataLoader(
            self.files,
            batch_sampler=batch_sampler,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            **extra,
        )

    def _on_device(self, batch):
        images, labels, idx, errors = batch
        bad = next((e for e in errors if e), None)
        if bad:
            raise UserError(f"cannot decode the image {bad}; replace the file, or remove it from its list")
        x = images.to(self.device, non_blocking=True).float().div_(255).sub_(self.mean).div_(self.std)
        return x.contiguous(memory_format=self.memory_format), labels.to(self.device), idx.to(self.device)

    def next_batch(self):
        """(images, labels, indices into the loader's images) of the next batch of the stream."""
        if self._batches is None:
            self._batches = iter(self._loader(_Batches(self.keys, self.consumed, self.part)))
        batch = self._on_device(next(self._batches))
        self.consumed += 1
        return batch

    def in_order(self, batch_size=None, part=(0, 1)):
        """Every image once, in order, with the evaluation transform when the files have it: for evaluation.
        part (rank, size): every size-th batch from the rank-th, for an evaluation split over processes."""
        step = batch_size or self.batch_size
        n = len(self.files)
        batches = [[(i, 0) for i in range(start, min(start + step, n))] for start in range(0, n, step)]
        batches = batches[part[0] :: part[1]]
        for batch in self._loader(batches):
            yield self._on_device(batch)

    def state_dict(self):
        """Where the stream stands: the batches consumed (the images and draws of the rest follow from it)."""
        return {"consumed": self.consumed}

    def load_state_dict(self, state):
        self.consumed, self._batches = state["consumed"], None
