"""The datasets on disk: CIFAR's file format, Fashion-MNIST's idx files, and users' mistakes."""

import os
import pickle

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli, write_cifar, write_fashion
from PIL import Image

from mwnet.data.catalog import MEAN_STD, load_arrays
from mwnet.data.datasets import CIFAR10, CIFAR100, FashionMNIST
from mwnet.data.files import FASHION_MNIST_DIR
from mwnet.data.noise import corruption_matrix, make_noisy_split
from mwnet.errors import UserError
from mwnet.tools import split


def test_cifar10_from_disk_follows_the_split(cifar10_dir):
    root, (images, labels, _) = cifar10_dir
    train = CIFAR10(root, train=True, meta=False, num_meta=100, corruption_prob=0.4, corruption_type="flip", seed=3)
    meta = CIFAR10(root, train=True, meta=True, num_meta=100, corruption_prob=0.4, corruption_type="flip", seed=3)
    meta_idx, train_idx, noisy = make_noisy_split(labels, 10, 100, "flip", 0.4, 3)
    assert train.train_data.shape == (len(train_idx), 32, 32, 3) and train.train_data.dtype == np.uint8
    np.testing.assert_array_equal(train.train_data, images[train_idx])  # pixels in N x H x W x C order
    np.testing.assert_array_equal(train.train_labels, noisy)
    np.testing.assert_array_equal(train.clean_labels, labels[train_idx])
    np.testing.assert_array_equal(train.is_noisy, noisy != labels[train_idx])
    assert train.noise_rate == pytest.approx(np.mean(noisy != labels[train_idx]))
    np.testing.assert_array_equal(train.corruption_matrix, corruption_matrix("flip", 0.4, 10))
    np.testing.assert_array_equal(meta.train_data, images[meta_idx])
    np.testing.assert_array_equal(meta.train_labels, labels[meta_idx])  # the meta set is clean
    assert not meta.is_noisy.any() and len(meta) == 100 and len(train) == 1100
    img, target = train[5]
    assert isinstance(img, Image.Image) and img.size == (32, 32) and target == noisy[5]


def test_cifar_getitem_applies_transforms_and_test_split(cifar10_dir):
    root, _ = cifar10_dir
    test = CIFAR10(root, train=False, transform=lambda im: np.asarray(im).sum(), target_transform=lambda y: -y)
    assert test.test_data.shape == (20, 32, 32, 3) and len(test) == 20
    value, target = test[3]
    assert value == int(test.test_data[3].astype(np.int64).sum()) and target == -test.test_labels[3]


def test_cifar100_coarse_labels_and_hierarchical_noise(cifar100_dir):
    root, (images, labels, coarse) = cifar100_dir
    ds = CIFAR100(root, meta=False, num_meta=500, corruption_prob=0.6, corruption_type="hierarchical", seed=1)
    np.testing.assert_array_equal(ds.train_coarse_labels, coarse[ds.indices])
    fine_to_coarse = np.zeros(100, dtype=int)
    fine_to_coarse[labels] = coarse
    np.testing.assert_array_equal(fine_to_coarse[ds.train_labels], ds.train_coarse_labels)
    assert ds.noise_rate > 0.5


def test_cifar_long_tailed(cifar10_dir):
    root, (_, labels, _) = cifar10_dir
    ds = CIFAR10(root, meta=False, num_meta=100, corruption_prob=0.0, imbalance_factor=10)
    counts = np.bincount(ds.clean_labels, minlength=10)
    assert counts[0] == 110 and counts[-1] == 11 and np.all(np.diff(counts) <= 0)


def test_fashion_mnist_from_idx_files(tmp_path):
    images, labels = write_fashion(str(tmp_path), per_class=30)
    ds = FashionMNIST(str(tmp_path), meta=False, num_meta=100, corruption_prob=0.4, corruption_type="unif", seed=2)
    _, train_idx, noisy = make_noisy_split(labels, 10, 100, "unif", 0.4, 2)
    assert ds.train_data.shape == (200, 32, 32, 3)
    np.testing.assert_array_equal(ds.train_data[:, 2:30, 2:30, 0], images[train_idx])  # centred
    assert np.all(ds.train_data[:, :2] == 0) and np.all(ds.train_data[:, :, 30:] == 0)  # zero border
    assert np.all(ds.train_data[..., 0] == ds.train_data[..., 2])  # three equal channels
    np.testing.assert_array_equal(ds.train_labels, noisy)
    assert len(FashionMNIST(str(tmp_path), train=False)) == 20


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR), reason="dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_and_its_statistics():
    ds = FashionMNIST(meta=False, num_meta=1000, corruption_prob=0.6, corruption_type="unif", seed=1)
    assert len(ds) == 59000 and ds.noise_rate == pytest.approx(0.54, abs=0.01)
    x = ds.train_data[..., 0] / 255.0
    mean, std = MEAN_STD["fashionmnist"]
    assert x.mean() == pytest.approx(mean[0], abs=2e-3) and x.std() == pytest.approx(std[0], abs=2e-3)
    assert len(FashionMNIST(train=False)) == 10000


def test_missing_data_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        CIFAR10(str(tmp_path), meta=False)


def cli(root, *args):
    return split.main(["--data_path", root, *args])


def test_cli_builds_and_saves_a_split(cifar10_dir, tmp_path, capsys):
    root, (_, labels, _) = cifar10_dir
    out = tmp_path / "split.npz"
    cli(root, "--num_meta", "100", "--corruption_type", "flip", "--seed", "4", "--out", str(out))
    saved = np.load(out)
    meta_idx, train_idx, noisy = make_noisy_split(labels, 10, 100, "flip", 0.4, 4)
    np.testing.assert_array_equal(saved["train_idx"], train_idx)
    np.testing.assert_array_equal(saved["noisy_labels"], noisy)
    assert "actual share of wrong labels" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["--corruption_type", "hierarchical"], ["cifar100"]),
        (["--num_meta", "105"], ["multiple of the number of classes"]),
        (["--num_meta", "2000"], ["smallest class has 120"]),
        (["--corruption_prob", "1.2"], ["[0, 1]"]),
        (["--corruption_type", "gaussian"], ["unknown corruption type"]),
    ],
)
def test_cli_bad_input_is_a_user_error(cifar10_dir, args, fragments):
    root, _ = cifar10_dir
    with pytest.raises(UserError) as e:
        cli(root, "--num_meta", "100", *args)
    assert all(f in str(e.value) for f in fragments) and "\n" not in str(e.value)


def test_cli_missing_data_says_where_and_what_to_do(tmp_path):
    """One real process for the CLI's wiring; the rest in-process."""
    assert_one_line_error(
        run_cli("load_corrupted_data.py", "--data_path", str(tmp_path)),
        str(tmp_path),
        "--data_path",
        "download",
        code=1,
    )
    with pytest.raises(UserError, match="train-images-idx3-ubyte.*dataset-fashion-mnist.*--download"):
        split.main(["--dataset", "fashionmnist", "--data_path", str(tmp_path)])


def corrupt(path, content):
    with open(path, "wb") as f:
        f.write(content)


class Payload:
    """A pickle that runs code when loaded (it would create `marker`)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_corrupt_and_foreign_data_files_are_one_line(tmp_path):
    write_cifar(str(tmp_path), "cifar10", per_class=20)
    folder = tmp_path / "cifar-10-batches-py"
    original = (folder / "data_batch_3").read_bytes()
    cases = [
        (b"not a pickle at all", "corrupt"),
        (
            pickle.dumps({"data": Payload(str(tmp_path / "marker")), "labels": []}),
            "open is not allowed in a data file",
        ),
        (pickle.dumps({"data": np.zeros((4, 3072), np.float32), "labels": [0] * 4}), "float32"),
        (pickle.dumps({"labels": [0]}), "not a dict with data and labels"),
    ]
    for content, fragment in cases:
        corrupt(folder / "data_batch_3", content)
        with pytest.raises(UserError, match=fragment):
            load_arrays("cifar10", str(tmp_path), True)
    assert not (tmp_path / "marker").exists()  # the payload never ran
    corrupt(folder / "data_batch_3", original)
    assert load_arrays("cifar10", str(tmp_path), True)[0].shape == (200, 32, 32, 3)


def test_corrupt_fashion_mnist_files_are_one_line(tmp_path):
    fashion = tmp_path / "fm"
    write_fashion(str(fashion))
    path = fashion / "train-images-idx3-ubyte.gz"
    good = path.read_bytes()
    for content in (
        good[:1000],
        good[:20] + bytes(b ^ 0xFF for b in good[20:200]) + good[200:],
    ):  # truncated; a bad stream
        corrupt(path, content)
        with pytest.raises(UserError, match="train-images-idx3-ubyte.gz is corrupt"):
            load_arrays("fashionmnist", str(fashion), True)


def test_fashion_mnist_where_torchvision_downloads_it(tmp_path):
    """--download puts the idx files under <data_path>/FashionMNIST/raw; they are found there."""
    write_fashion(str(tmp_path / "FashionMNIST" / "raw"), per_class=30)
    images, labels, _ = load_arrays("fashionmnist", str(tmp_path), True)
    assert images.shape == (300, 32, 32, 3) and len(labels) == 300


@pytest.mark.parametrize("folder", ["existing", "new"])
def test_a_failed_download_leaves_no_lock_and_no_folder_it_made(tmp_path, monkeypatch, folder):
    import torchvision.datasets as tvd

    def offline(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(tvd, "CIFAR10", offline)
    root = tmp_path / "data"
    if folder == "existing":
        root.mkdir()
    with pytest.raises(UserError, match="could not download cifar10 into"):
        load_arrays("cifar10", str(root), True, download=True)
    assert (sorted(os.listdir(root)) == []) if folder == "existing" else not root.exists()
