"""The on-device batches: the original's augmentation, its distribution, and its sampling modes."""

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image

from mwnet.data.catalog import MEAN_STD
from mwnet.data.device_loader import DeviceLoader

MEAN, STD = MEAN_STD["cifar10"]


def loader(images, labels=None, **kwargs):
    labels = np.zeros(len(images), dtype=int) if labels is None else labels
    args = dict(batch_size=10, device="cpu", mean=MEAN, std=STD, augment=True, sampling="epoch", seed=0)
    args.update(kwargs)
    return DeviceLoader(images, labels, **args)


def random_images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def test_matches_torchvision_pipeline_for_given_crop_and_flip():
    """For a given crop offset and flip, the batch equals the original's PIL/torchvision transform."""
    images = random_images(6)
    dl = loader(images)
    offsets = torch.tensor([[0, 0], [8, 8], [3, 5], [8, 0], [0, 8], [4, 4]])
    flips = torch.tensor([False, True, False, True, True, False])
    batch = dl.make_batch(torch.arange(6), offsets, flips)
    assert batch.shape == (6, 3, 32, 32) and batch.dtype == torch.float32
    normalize = T.Normalize(MEAN, STD)
    for i in range(6):
        padded = TF.pad(Image.fromarray(images[i]), 4, padding_mode="reflect")
        crop = TF.crop(padded, int(offsets[i, 0]), int(offsets[i, 1]), 32, 32)
        if flips[i]:
            crop = TF.hflip(crop)
        torch.testing.assert_close(batch[i], normalize(TF.to_tensor(crop)), rtol=0, atol=1e-6)


def test_test_images_are_only_normalised():
    images = random_images(7)
    dl = loader(images, augment=False)
    (x, _, idx), *_ = list(dl.in_order(batch_size=7))
    reference = torch.stack([T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])(Image.fromarray(im)) for im in images])
    torch.testing.assert_close(x, reference, rtol=0, atol=1e-6)
    assert idx.tolist() == list(range(7))


def test_an_augmenting_loader_evaluates_its_images_unaugmented_and_draws_nothing_for_it():
    """in_order of a loader that augments (the meta set's, evaluated for meta_acc): the images themselves, only
    normalised, and its training batches afterwards the same as without the evaluation."""
    images = random_images(7)
    dl, untouched = loader(images), loader(images)
    (x, _, _), *_ = list(dl.in_order(batch_size=7))
    reference = torch.stack([T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])(Image.fromarray(im)) for im in images])
    torch.testing.assert_close(x, reference, rtol=0, atol=1e-6)
    for _ in range(3):
        (a, _, i), (b, _, j) = dl.next_batch(), untouched.next_batch()
        assert torch.equal(a, b) and torch.equal(i, j)


def position_images(n):
    """Images whose pixels say where they are: channel 0 = 8 * row, channel 1 = 8 * column."""
    r, c = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    img = np.stack([8 * r, 8 * c, np.zeros_like(r)], axis=-1).astype(np.uint8)
    return np.repeat(img[None], n, axis=0)


def test_crop_bounds_offsets_and_flip_rate():
    n = 3000
    dl = loader(position_images(n), batch_size=n)
    x, _, _ = dl.next_batch()
    pixels = torch.round((x * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)) * 255)
    rows, cols = (pixels[:, 0] / 8).long(), (pixels[:, 1] / 8).long()
    reflect = np.array(list(range(4, 0, -1)) + list(range(32)) + list(range(30, 26, -1)))
    seen, flipped = set(), 0
    for i in range(n):
        row_col = rows[i, :, 0].numpy()
        dy = [d for d in range(9) if np.array_equal(reflect[d : d + 32], row_col)]
        first_row = cols[i, 0].numpy()
        dx = [d for d in range(9) if np.array_equal(reflect[d : d + 32], first_row)]
        dx_flip = [d for d in range(9) if np.array_equal(reflect[d : d + 32][::-1], first_row)]
        assert len(dy) == 1 and len(dx) + len(dx_flip) == 1, "not a 32 x 32 window of the padded image"
        flipped += bool(dx_flip)
        seen.add((dy[0], (dx or dx_flip)[0]))
    assert seen == {(a, b) for a in range(9) for b in range(9)}  # every offset in 0..8, both axes
    assert abs(flipped / n - 0.5) < 0.04  # 3000 fair flips: 3 sigma is 0.027


def test_epoch_mode_visits_each_image_once_per_pass():
    dl = loader(random_images(25), labels=np.arange(25), batch_size=10)
    assert len(dl) == 3
    for _ in range(2):
        batches = [dl.next_batch() for _ in range(len(dl))]
        assert [len(b[2]) for b in batches] == [10, 10, 5]  # the last batch is short, as drop_last=False
        idx = torch.cat([b[2] for b in batches])
        assert sorted(idx.tolist()) == list(range(25))
        assert torch.equal(torch.cat([b[1] for b in batches]), idx)  # labels follow the images


def test_random_mode_draws_distinct_images_each_batch():
    dl = loader(random_images(30), batch_size=20, sampling="random")
    first = [dl.next_batch()[2] for _ in range(50)]
    assert all(len(set(i.tolist())) == 20 for i in first)
    counts = torch.bincount(torch.cat(first), minlength=30)
    assert counts.min() > 0  # every image is drawn sooner or later


def test_seeded_and_resumable():
    images = random_images(23)
    a, b = loader(images, seed=5), loader(images, seed=5)
    for _ in range(4):
        a.next_batch()
        b.next_batch()
    state = a.state_dict()
    expected = [a.next_batch() for _ in range(6)]  # crosses an epoch boundary
    c = loader(images, seed=99)
    c.load_state_dict(state)
    for (x1, y1, i1), (x2, y2, i2) in zip(expected, [c.next_batch() for _ in range(6)]):
        assert torch.equal(i1, i2) and torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(loader(images, seed=6).next_batch()[0], loader(images, seed=5).next_batch()[0])


def test_bad_sampling_mode():
    with pytest.raises(ValueError, match="sampling"):
        loader(random_images(2), sampling="sequential")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_equal_cpu_batches_for_same_crops():
    images = random_images(8)
    cpu, gpu = loader(images), loader(images, device="cuda")
    offsets, flips = torch.randint(0, 9, (8, 2)), torch.rand(8) < 0.5
    x_cpu = cpu.make_batch(torch.arange(8), offsets, flips)
    x_gpu = gpu.make_batch(torch.arange(8, device="cuda"), offsets.cuda(), flips.cuda())
    torch.testing.assert_close(x_gpu.cpu(), x_cpu, rtol=0, atol=1e-6)
