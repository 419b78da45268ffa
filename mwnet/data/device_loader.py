"""Batches made where the model runs: uint8 images held on the device, augmentation done there.

The original feeds each image through PIL and torchvision transforms in DataLoader workers. Here
the whole (padded) set sits on the device as uint8 and a batch is one gather: the same
augmentation (reflect-pad 4, random 32 x 32 crop, random horizontal flip, normalise), the same
distribution of crops and flips, drawn from an explicit seeded torch.Generator.

Sampling modes:
  "epoch":  shuffled passes over the data, the last batch of a pass possibly short (MW-Net.py);
  "random": each batch a fresh draw of distinct images (the WRN script's next(iter(loader))).
Either mode never ends: `next_batch()` starts a new pass when one is used up, which is also the
original's endless meta-batch stream.
"""

import torch

PAD = 4
SIZE = 32
# Reflect padding of 4 as a fixed index map: padded column c reads original column REFLECT[c].
REFLECT = list(range(PAD, 0, -1)) + list(range(SIZE)) + list(range(SIZE - 2, SIZE - 2 - PAD, -1))


class DeviceLoader:
    def __init__(
        self, images, labels, batch_size, device, mean, std, augment=True, sampling="epoch", seed=0, channels_last=False
    ):
        """images: N x 32 x 32 x 3 uint8 (NumPy or tensor); labels: N integers.

        channels_last: batches in that memory format (same values), the fast layout for cuDNN."""
        if sampling not in ("epoch", "random"):
            raise ValueError(f"sampling must be 'epoch' or 'random', got {sampling!r}")
        self.device = torch.device(device)
        x = torch.as_tensor(images).to(self.device).permute(0, 3, 1, 2).contiguous()  # N x 3 x 32 x 32 uint8
        if augment:
            index = torch.tensor(REFLECT, device=self.device)
            x = x.index_select(2, index).index_select(3, index)  # N x 3 x 40 x 40, padded once
        self.images = x
        self.labels = torch.as_tensor(labels, dtype=torch.long).to(self.device)
        self.batch_size, self.augment, self.sampling = batch_size, augment, sampling
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self._arange = torch.arange(SIZE, device=self.device)
        self._perm, self._pos = None, 0
        self.part = (0, 1)  # (rank, processes): a process of a torchrun run makes its slice of each batch
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __len__(self):
        """Batches in one pass over the data (an epoch of the original's DataLoader)."""
        return -(-len(self.labels) // self.batch_size)

    def next_batch(self):
        """(images float N x 3 x 32 x 32 normalised, labels, indices into the loader's data)."""
        n = len(self.labels)
        if self.sampling == "random":
            idx = torch.randperm(n, generator=self.generator, device=self.device)[: self.batch_size]
        else:
            if self._perm is None or self._pos >= n:
                self._perm, self._pos = torch.randperm(n, generator=self.generator, device=self.device), 0
            idx = self._perm[self._pos : self._pos + self.batch_size]
            self._pos += self.batch_size
        rank, size = self.part
        if size == 1:
            return self.make_batch(idx), self.labels[idx], idx
        # One of several processes (torchrun): the whole batch's crops and flips are drawn, so that the generator
        # moves as in one process, and this process makes its slice of the batch.
        b = len(idx)
        mine = slice(rank * b // size, (rank + 1) * b // size)
        offsets = flips = None
        if self.augment:
            offsets = torch.randint(0, 2 * PAD + 1, (b, 2), generator=self.generator, device=self.device)[mine]
            flips = (torch.rand(b, generator=self.generator, device=self.device) < 0.5)[mine]
        idx = idx[mine]
        return self.make_batch(idx, offsets, flips), self.labels[idx], idx

    def make_batch(self, idx, offsets=None, flips=None):
        """Augmented, normalised images of `idx`; offsets (B x 2, in 0..8) and flips drawn if not given."""
        if not self.augment:
            return self._normalise(self.images[idx])
        b = len(idx)
        if offsets is None:
            offsets = torch.randint(0, 2 * PAD + 1, (b, 2), generator=self.generator, device=self.device)
        if flips is None:
            flips = torch.rand(b, generator=self.generator, device=self.device) < 0.5
        rows = offsets[:, :1] + self._arange  # B x 32
        cols = offsets[:, 1:] + torch.where(flips[:, None], SIZE - 1 - self._arange, self._arange)
        channels = torch.arange(self.images.shape[1], device=self.device)
        crops = self.images[
            idx[:, None, None, None], channels[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]
        ]
        return self._normalise(crops)

    def _normalise(self, x):
        return x.float().div_(255).sub_(self.mean).div_(self.std).contiguous(memory_format=self.memory_format)

    def in_order(self, batch_size=None, part=(0, 1)):
        """Every image once, in order, unaugmented (an augmenting loader's: the centre of its padded images, the
        images themselves), drawing nothing from the generator, so that the batches a run trains on are the same
        with or without an evaluation of this loader's images: for evaluation. part (rank, size): every size-th
        batch from the rank-th, this process's share of an evaluation split over processes."""
        step = batch_size or self.batch_size
        rank, size = part
        for number, start in enumerate(range(0, len(self.labels), step)):
            if number % size != rank:
                continue
            idx = torch.arange(start, min(start + step, len(self.labels)), device=self.device)
            centre = torch.full((len(idx), 2), PAD, device=self.device)
            yield (
                self.make_batch(idx, centre, torch.zeros(len(idx), dtype=torch.bool, device=self.device)),
                self.labels[idx],
                idx,
            )

    def state_dict(self):
        """Where the sampling stands, so that a resumed run draws the same batches."""
        perm = None if self._perm is None else self._perm.cpu()
        return {"generator": self.generator.get_state(), "perm": perm, "pos": self._pos}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])
        self._perm = None if state["perm"] is None else state["perm"].to(self.device)
        self._pos = state["pos"]
