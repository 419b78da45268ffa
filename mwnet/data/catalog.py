"""The datasets a run can train on, one DatasetSpec each (SPECS): what the rest of the package asks of a dataset
instead of comparing its name. A new dataset: its reader (files.py for images held in memory, or a streamed
reader beside clothing1m.py and folder.py), its spec here.

This module imports nothing heavy, so that the flags can use it anywhere; it imports the readers (lazily, where a
spec loads or reads) and no reader imports it back, so the imports of data/ make no circle.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

_NAMES = {
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    "fashionmnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    "clothing1m": (
        "T-Shirt",
        "Shirt",
        "Knitwear",
        "Chiffon",
        "Sweater",
        "Hoodie",
        "Windbreaker",
        "Jacket",
        "Down Coat",
        "Suit",
        "Shawl",
        "Dress",
        "Vest",
        "Underwear",
    ),
}

# Per-channel mean and std of the training images in [0, 1]: CIFAR's from the original scripts;
# Fashion-MNIST's measured on its 60,000 training images zero-padded to 32 x 32.
_MEAN_STD = {
    "cifar10": ((125.3 / 255, 123.0 / 255, 113.9 / 255), (63.0 / 255, 62.1 / 255, 66.7 / 255)),
    "cifar100": ((125.3 / 255, 123.0 / 255, 113.9 / 255), (63.0 / 255, 62.1 / 255, 66.7 / 255)),
    "fashionmnist": ((0.2190,) * 3, (0.3318,) * 3),
    "clothing1m": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # ImageNet's, as the pretrained ResNet-50 expects
}
IMAGENET_MEAN_STD = _MEAN_STD["clothing1m"]  # a folder's with --pretrained; otherwise measured on its images


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset kind: its facts and what it changes in a run, for the flags (engine/options.py), the loaders
    (engine/components.py), the run files and the tools."""

    name: str
    num_classes: int | None  # None: read from the data (a folder's training set names its classes)
    class_names: tuple | None = None  # by index, as samples.csv and the suspects' contact sheet show them
    mean_std: tuple | None = None  # per-channel, of images in [0, 1]; None: measured on the run's images
    # Held whole on the device at 32 x 32 (device_loader.py), or streamed from image files (stream_loader.py).
    streamed: bool = False
    # Its labels are its own (web labels, a user's): no synthetic noise, --corruption_* and --imb_factor refused.
    own_labels: bool = False
    # Fetched when missing without --download (the original downloads CIFAR); else only with --download.
    downloads: bool = True
    coarse_classes: bool = False  # hierarchical noise's superclasses (CIFAR-100's)
    human_labels: str | None = None  # -ctype human's default --human_labels (cifar_n.VARIANTS has them all)
    # The dataset is the folder --data_path names: its name names the run, its lists tell runs apart, and a run
    # directory made on another folder is refused by the runner.
    named_by_path: bool = False
    # The clean meta set: a class-balanced draw from the clean pool (the split function), or the pool whole.
    meta_pool_whole: bool = False
    # The run name's noise part where the labels are the dataset's own (None: the synthetic noise's words).
    noise_name: str | None = None
    # Flag defaults for the flags not given, as options.apply_preset takes them: common ones, and per schedule
    # unit ("epoch", "iter").
    preset: dict | None = field(default=None, compare=False)
    # After the preset: defaults that depend on other flags or on the data, f(args, given flag names).
    defaults: Callable | None = field(default=None, compare=False)
    # Held in memory: its loader, f(root, train, download) -> (images N x 32 x 32 x 3 uint8, labels, coarse labels
    # or None), and where it is read from when --data_path is left at its default, f(data_path) -> folder.
    load: Callable | None = field(default=None, compare=False)
    default_root: Callable | None = field(default=None, compare=False)
    # Streamed: its reader, f(args, loader workers) -> streamed.Streamed (its lists checked).
    read: Callable | None = field(default=None, compare=False)


def _cifar(name):
    def load(root, train, download):
        from mwnet.data.files import cifar_arrays

        return cifar_arrays(root, name, train, download)

    return load


def _fashion(root, train, download):
    from mwnet.data.files import fashion_arrays

    return fashion_arrays(root, train, download)


def _fashion_root(data_path):
    from mwnet.data.files import fashion_root

    return fashion_root(data_path)


def _read_clothing1m(args, workers):
    from mwnet.data.streamed import read_clothing1m_sets

    return read_clothing1m_sets(args, workers, _NAMES["clothing1m"], _MEAN_STD["clothing1m"])


def _read_folder(args, workers):
    from mwnet.data.streamed import read_folder_sets

    return read_folder_sets(args, workers, IMAGENET_MEAN_STD)


def _folder_defaults(args, given):
    """A folder: 224 x 224 for ResNet-50 unless --image_size is given; without --meta_source, its clean meta set
    (meta/ or meta.csv) where it holds one, else one selected from its training set."""
    if args.arch == "resnet50" and "image_size" not in given:
        args.image_size = 224
    if "meta_source" not in given:
        from mwnet.data.folder import has_meta
        from mwnet.method import method

        needed = method(args.method).reads_meta
        args.meta_source = "clean" if has_meta(args.data_path) or not needed else "selected"


SPECS = {
    spec.name: spec
    for spec in (
        DatasetSpec("cifar10", 10, _NAMES["cifar10"], _MEAN_STD["cifar10"], load=_cifar("cifar10")),
        DatasetSpec(
            "cifar100",
            100,
            None,
            _MEAN_STD["cifar100"],
            coarse_classes=True,
            human_labels="noisy",
            load=_cifar("cifar100"),
        ),
        DatasetSpec(
            "fashionmnist",
            10,
            _NAMES["fashionmnist"],
            _MEAN_STD["fashionmnist"],
            downloads=False,
            load=_fashion,
            default_root=_fashion_root,
        ),
        # The defaults of its protocol (README, "Clothing1M"; the assumed ones are marked there). The
        # iteration-counted script takes the same length in iterations of batch 32 (an epoch of the 1,037,497
        # noisy training images is about 32,400 of them).
        DatasetSpec(
            "clothing1m",
            14,
            _NAMES["clothing1m"],
            _MEAN_STD["clothing1m"],
            streamed=True,
            own_labels=True,
            noise_name="web",
            read=_read_clothing1m,
            preset={
                "arch": "resnet50",
                "pretrained": "imagenet",
                "batch_size": 32,
                "lr": 0.01,
                "momentum": 0.9,
                "nesterov": False,
                "weight_decay": 1e-3,
                "num_meta": 7000,
                "epoch": {"epochs": 10, "milestones": [5], "eval_every": 1, "warmup": 1},
                "iter": {"iters": 324000, "milestones": [162000], "eval_every": 32400, "warmup": 32400},
            },
        ),
        # A user's own images (folder.py): the script's schedule, at 32 x 32 unless the flags say otherwise (224
        # for ResNet-50), the meta set from meta/ (or meta.csv) where the folder has one, else selected.
        DatasetSpec(
            "folder",
            None,
            streamed=True,
            own_labels=True,
            named_by_path=True,
            meta_pool_whole=True,
            preset={"image_size": 32, "epoch": {}, "iter": {}},
            defaults=_folder_defaults,
            read=_read_folder,
        ),
    )
}
DATASETS = tuple(SPECS)
# Views of the specs, by name, for the readers in this package
NUM_CLASSES = {n: s.num_classes for n, s in SPECS.items() if s.num_classes is not None}
STREAMED = tuple(n for n, s in SPECS.items() if s.streamed)
CLASS_NAMES = {n: s.class_names for n, s in SPECS.items() if s.class_names is not None}
MEAN_STD = {n: s.mean_std for n, s in SPECS.items() if s.mean_std is not None}


def spec(name):
    """The spec of a dataset's name (a run's --dataset, or config.json's "dataset"); an unknown name (a run
    directory from elsewhere): a spec that claims nothing of it."""
    return SPECS.get(name) or DatasetSpec(str(name), None)


def load_arrays(dataset, root, train, download=False):
    """Images (N x 32 x 32 x 3 uint8), labels and coarse labels (or None) of a dataset held in memory, by its
    spec's loader."""
    return spec(dataset).load(root, train, download)


def default_root(dataset, data_path):
    """The folder a dataset is read from: --data_path, or where its spec looks when --data_path is the default."""
    about = spec(dataset)
    return about.default_root(data_path) if about.default_root is not None else data_path
