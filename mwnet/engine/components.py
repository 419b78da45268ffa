"""The parts of a run built from its flags: the device and its numerics, the data on the device, the
classifier, the meta-weight-net and their optimisers. training.py runs the loop over them.
"""

import ctypes
import hashlib
import importlib.metadata
import os
import platform
import subprocess
import sys
import warnings
from dataclasses import dataclass

import numpy as np
import torch

import mwnet
from mwnet.data import cifar_n, exclude, subset
from mwnet.data.catalog import default_root, load_arrays, spec
from mwnet.data.files import path_bytes
from mwnet.data.noise import make_noisy_split
from mwnet.data.split import InMemory, OnDisk, Split
from mwnet.engine.options import PRECISIONS
from mwnet.errors import UserError
from mwnet.method import method
from mwnet.models import build_model
from mwnet.models.meta_layers import VNet

DRY_RUN_TEST_IMAGES = 200


def pick_device(name, local_rank=None):
    """--device; under torchrun (local_rank given) the GPU of this process on its machine."""
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda, but no CUDA device is visible; use --device cpu or --device auto")
    cuda = name == "cuda" or (name == "auto" and torch.cuda.is_available())
    if cuda and local_rank:
        return torch.device("cuda", local_rank)
    return torch.device("cuda" if cuda else "cpu")


def set_numerics(precision, deterministic):
    """--precision and --deterministic. fp32 is strict float32: cuDNN's convolutions and cuBLAS's matmuls
    would otherwise run in TF32 on Ampere and later GPUs (cuDNN's default), which the original never did.

    Set through the allow_tf32 flags, which every supported torch has. Since torch 2.9 they also set the
    per-operator fp32_precision flags, so the legacy and the new getters both answer; setting the new ones
    alone leaves the legacy getters (read by torch.compile, cudnn.flags() and users' code) raising."""
    tf32, _ = PRECISIONS[precision]
    with warnings.catch_warnings():  # newer torch calls these setters deprecated; they are the one consistent way
        warnings.simplefilter("ignore", UserWarning)
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if deterministic != torch.are_deterministic_algorithms_enabled():  # the call imports torch._inductor: 1 s
        torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.benchmark = not deterministic


# glibc's mallopt parameters (malloc.h): above M_MMAP_THRESHOLD bytes an allocation is its own mapping, given back
# to the system when freed; free memory above M_TRIM_THRESHOLD at the heap's top is given back too.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEPT_ALLOCATION, KEPT_FREE = 256 << 20, 1 << 30


def keep_freed_memory():
    """Freed host memory stays with the process for the next tensor, up to tensors of 256 MiB. glibc gives a freed
    block of a few MiB back to the system and maps a fresh one at the next allocation of its size; the system
    then zeroes every page of it at its first touch. An iteration on the CPU allocates and frees tensors of that
    size by the dozen (a SmallCNN activation at batch 100 is 6.5 MiB), and those page faults cost more than the
    arithmetic on them. The values computed do not change, only where the memory comes from. Returns whether
    it took effect (glibc on Linux); elsewhere nothing changes."""
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    # trim first: setting either turns off glibc's own adjustment of both
    return bool(mallopt(M_TRIM_THRESHOLD, KEPT_FREE)) and bool(mallopt(M_MMAP_THRESHOLD, KEPT_ALLOCATION))


def numerics():
    """The settings set_numerics made, for config.json: whether TF32 is allowed for matmuls and convolutions."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return {
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        }


def autocast(precision, device):
    """bf16 autocast for the steps and the evaluation under --precision bf16; a no-op otherwise."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=PRECISIONS[precision][1])


@dataclass(frozen=True)
class Data:
    """A run's data on the device, built once (build_data); a meta set selected later makes a new one
    (engine/meta_selection.py)."""

    train: object  # the training loader (DeviceLoader or StreamLoader), the noisy labels
    meta: object | None  # the meta set's loader (None: no meta set, or a selected one not yet made)
    test: object
    meta_idx: np.ndarray
    train_idx: np.ndarray
    clean_labels: np.ndarray  # -1 where unknown
    noisy_labels: np.ndarray
    is_noisy: torch.Tensor  # where the clean label is known and differs
    is_clean: torch.Tensor  # where the clean label is known and equal
    num_classes: int
    fingerprint: str  # of the training and test images and labels: resume checks it (components.fingerprint)
    images: object  # the training images (data/split.py: InMemory or OnDisk), for training_loader
    classes: list  # the classes' names by index
    noise_source: dict | None = None  # -ctype human: the label file, its SHA-256, the variant
    subset: dict | None = None  # --train_subset: what config.json records of it (data/subset.py)
    folder: dict | None = None  # --dataset folder: what config.json records of it (data/folder.py)
    paths: list | None = None  # a streamed dataset's training images, relative to --data_path
    selection: dict | None = None  # --meta_source selected, once made: its record (engine/meta_selection.py)
    about: object = None  # the dataset's spec (data/catalog.py): what the run's lines say of the data ask it

    @property
    def noise_rate(self):
        """The share of wrong labels among the training images whose clean label is known (-1: unknown)."""
        known = self.clean_labels >= 0
        return float(np.mean(self.clean_labels[known] != self.noisy_labels[known])) if known.any() else 0.0

    def training_loader(self, positions=None, augment=False, sampling="epoch", seed=0):
        """The training images at `positions` (None: all, in order), with their noisy labels: the selected meta
        set's loader, and the unaugmented pass behind samples.csv."""
        if positions is None:
            return self.images.loader(self.noisy_labels, sampling, seed, augment)
        return self.images.take(positions).loader(self.noisy_labels[positions], sampling, seed, augment)


def test_arrays(args):
    """The test set's images and labels (its first 200 in a dry run)."""
    root = default_root(args.dataset, args.data_path)
    images, labels, _ = load_arrays(args.dataset, root, False, args.download or spec(args.dataset).downloads)
    if args.dry_run:
        images, labels = images[:DRY_RUN_TEST_IMAGES], labels[:DRY_RUN_TEST_IMAGES]
    return images, labels


def load_test(args, device):
    """The test set as a loader on the device."""
    if spec(args.dataset).streamed:
        sets = read_streamed(args)
        return streamed_test(args, device, sets.test, sets.mean_std)
    images, labels = test_arrays(args)
    return InMemory(images, spec(args.dataset).mean_std, device, args.batch_size).evaluation_loader(labels)


def run_seeds(seed):
    """The seeds of a run's model, training batches and meta batches, from --seed."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(3)]


def class_count(args):
    """The number of classes of the run's dataset (a folder's: its training set's)."""
    if spec(args.dataset).num_classes is not None:
        return spec(args.dataset).num_classes
    from mwnet.data.folder import read_folder

    return len(read_folder(args.data_path).classes)


def image_size(args):
    """The side of the images the classifier sees: --image_size for a streamed dataset, else 32 (held in memory
    at 32 x 32)."""
    return args.image_size if spec(args.dataset).streamed else 32


def fingerprint(*arrays):
    """A digest of arrays' dtypes, shapes and bytes: a resumed run checks with it that it reads the run's data."""
    digest = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        digest.update(f"{a.dtype}{a.shape}".encode())
        digest.update(memoryview(a).cast("B"))
    return digest.hexdigest()[:20]


def check_sizes(args, n_train, n_meta, k):
    """Before anything goes to the device: a training set, a batch that fits it, a meta set where needed."""
    if n_train == 0:
        raise UserError(f"--num_meta {args.num_meta} leaves no training images; pass a smaller --num_meta")
    if args.batch_size > n_train:
        raise UserError(
            f"--batch_size {args.batch_size} is larger than the training set ({n_train} images); pass a smaller one"
        )
    if method(args.method).reads_meta and args.meta_source == "clean" and n_meta == 0:
        raise UserError(f"--method {args.method} needs a clean meta set; pass --num_meta > 0 (a multiple of {k})")


def workers(args):
    """--workers, or the CPU count less one (the main process feeds the device), at most 8."""
    return args.workers if args.workers is not None else max(1, min(8, (os.cpu_count() or 2) - 1))


def on_disk(args, device, paths, mean_std):
    return OnDisk(args.data_path, paths, args.image_size, mean_std, device, args.batch_size, workers(args))


def streamed_test(args, device, test, mean_std):
    paths, labels = test
    if args.dry_run:
        paths, labels = paths[:DRY_RUN_TEST_IMAGES], labels[:DRY_RUN_TEST_IMAGES]
    return on_disk(args, device, paths, mean_std).evaluation_loader(labels)


def read_streamed(args):
    """A streamed dataset's lists, checked, with its normalisation (data/streamed.py: its spec's reader)."""
    return spec(args.dataset).read(args, workers(args))


def streamed_split(args, device):
    """Clothing1M: the noisy training list, a class-balanced meta set from the clean validation list (the
    protocol's split function, seeded), the clean test list. A folder: its training and test sets, its meta
    split whole as the clean meta set. Every file checked before any is used."""
    sets = read_streamed(args)
    (train_paths, noisy), train_clean, k = sets.train, sets.train_clean, len(sets.classes)
    train_idx = np.arange(len(train_paths), dtype=np.int64)  # samples.csv's index: the position in the list
    if args.exclude_top:
        train_idx, noisy, keep = exclude.drop(args, train_idx, noisy)
        train_paths, train_clean = [train_paths[i] for i in keep], train_clean[keep]
    pool_paths, pool_labels = sets.pool or ([], np.zeros(0, dtype=np.int64))
    if spec(args.dataset).meta_pool_whole:  # the user's meta set is the meta set
        meta_idx = np.arange(len(pool_paths) if clean_meta(args) else 0, dtype=np.int64)
    else:  # a class-balanced draw from the clean pool, seeded: the protocol's split function
        meta_idx, _, _ = make_noisy_split(pool_labels, k, clean_meta(args), "unif", 0.0, args.seed)
    listed = [path_bytes(p) for p in (train_paths, pool_paths, sets.test[0])]
    named = [path_bytes(sets.classes), np.asarray(sets.mean_std, dtype=np.float64)]
    digest = fingerprint(*listed, noisy, pool_labels, sets.test[1], train_clean, *(named if sets.folder else []))
    test_paths, test_labels = sets.test
    if args.dry_run:
        test_paths, test_labels = test_paths[:DRY_RUN_TEST_IMAGES], test_labels[:DRY_RUN_TEST_IMAGES]
    return Split(
        on_disk(args, device, train_paths, sets.mean_std),
        noisy,
        train_clean,
        train_idx,
        on_disk(args, device, pool_paths, sets.mean_std).take(meta_idx),
        pool_labels[meta_idx],
        meta_idx,
        on_disk(args, device, test_paths, sets.mean_std),
        test_labels,
        digest,
        sets.classes,
        folder=sets.folder,
        paths=train_paths,
    )


def memory_split(args, device):
    """A dataset held in memory: the noise protocol's split (or the human labels', or a subset's), its noisy labels."""
    about = spec(args.dataset)
    root = default_root(args.dataset, args.data_path)
    download = args.download or about.downloads  # the original downloads CIFAR when it is missing
    images, labels, coarse = load_arrays(args.dataset, root, True, download)
    k = about.num_classes
    human, source = None, None
    if args.corruption_type == "human":
        human, source = human_labels(args, labels)
        # The synthetic protocol's split without its noise: the same meta set for the seed, taken class-balanced by
        # the clean labels; the training images then keep their human labels.
        meta_idx, train_idx, _ = make_noisy_split(labels, k, clean_meta(args), "unif", 0.0, args.seed, coarse)
        noisy = human[train_idx]
    elif args.train_subset:
        meta_idx, train_idx, noisy = subset_split(args, labels, coarse, k)
    else:
        meta_idx, train_idx, noisy = make_noisy_split(
            labels, k, clean_meta(args), args.corruption_type, args.corruption_prob, args.seed, coarse, args.imb_factor
        )
    if args.exclude_top:
        train_idx, noisy, _ = exclude.drop(args, train_idx, noisy)
    test_images, test_labels = test_arrays(args)
    excluded = [train_idx] if args.exclude_top else []  # what --exclude leaves depends on the file too
    digest = fingerprint(  # with the flags: the split
        images, labels, test_images, test_labels, *([] if human is None else [human]), *excluded
    )
    whole = InMemory(images, about.mean_std, device, args.batch_size)
    return Split(
        whole.take(train_idx),
        noisy,
        labels[train_idx],
        train_idx,
        whole.take(meta_idx),
        labels[meta_idx],
        meta_idx,
        InMemory(test_images, about.mean_std, device, args.batch_size),
        test_labels,
        digest,
        list(about.class_names or [str(c) for c in range(k)]),
        noise_source=source,
        subset=subset.describe(np.sort(train_idx)) if args.train_subset else None,
    )


def build_data(args, device, seeds):
    """The split, its noisy labels and the three loaders; sizes are checked before anything goes to the device."""
    split = (streamed_split if spec(args.dataset).streamed else memory_split)(args, device)
    k = len(split.classes)
    check_sizes(args, len(split.train_idx), len(split.meta_idx), k)
    train = split.train.loader(split.noisy, args.sampling, seeds[1], args.augment)
    meta = None
    if method(args.method).reads_meta and args.meta_source == "clean":
        meta = split.meta.loader(split.meta_labels, args.meta_sampling, seeds[2], args.augment)
    test = split.test.evaluation_loader(split.test_labels)
    if args.meta_source == "selected":
        check_selectable(args, split.noisy, k)
    known = split.clean >= 0
    return Data(
        train,
        meta,
        test,
        split.meta_idx,
        split.train_idx,
        split.clean,
        split.noisy,
        torch.as_tensor(known & (split.clean != split.noisy), device=device),
        torch.as_tensor(known & (split.clean == split.noisy), device=device),
        k,
        split.fingerprint,
        split.train,
        split.classes,
        noise_source=split.noise_source,
        subset=split.subset,
        folder=split.folder,
        paths=split.paths,
        about=spec(args.dataset),
    )


def clean_meta(args):
    """How many clean meta images the split takes out of the training set: none for a selected meta set."""
    return args.num_meta if args.meta_source == "clean" else 0


def check_selectable(args, noisy, k):
    """--meta_source selected: every class (by its noisy labels) has the images the selection takes of it."""
    per, counts = args.num_meta // k, np.bincount(noisy, minlength=k)
    if counts.min() < per:
        c = int(np.argmin(counts))
        raise UserError(
            f"--meta_source selected takes {per} training images of each class by their noisy labels, but class {c} has {counts[c]}; pass a smaller --num_meta"
        )


def subset_split(args, labels, coarse, k):
    """--train_subset: the noise protocol on the fixed subset (no meta images taken out of it; with --imb_factor cut
    to a long tail, the subset's images a class the largest class's), and the meta set
    by the protocol's own class-balanced draw from the images outside it; with --meta_from inside, the protocol's
    split of the subset itself, meta set included. Indices into the whole training set."""
    train_part, pool = subset.fixed_subset(labels, k, args.train_subset)
    if train_part is None or len(pool) < clean_meta(args):
        raise UserError(
            f"--train_subset {args.train_subset} with --num_meta {args.num_meta} needs more images than {args.dataset}'s training set has per class; pass smaller ones"
        )
    part_coarse = None if coarse is None else coarse[train_part]
    inside = clean_meta(args) if args.meta_from == "inside" else 0  # then the original's split, on the subset
    meta_part, order, noisy = make_noisy_split(
        labels[train_part],
        k,
        inside,
        args.corruption_type,
        args.corruption_prob,
        args.seed,
        part_coarse,
        args.imb_factor,
    )
    if inside:
        return train_part[meta_part], train_part[order], noisy
    meta_part, _, _ = make_noisy_split(labels[pool], k, clean_meta(args), "unif", 0.0, args.seed)
    return pool[meta_part], train_part[order], noisy


def human_labels(args, labels):
    """-ctype human: the variant's labels from the CIFAR-N file (fetched with --download when missing), and what
    config.json records of the file: its path, SHA-256 and the variant."""
    path = cifar_n.noise_file(args.dataset, args.data_path, args.noise_file)
    if args.download and not os.path.isfile(path):
        cifar_n.download(args.dataset, path)
    human, sha256 = cifar_n.read_human_labels(path, args.dataset, args.human_labels, labels)
    return human, {"file": os.path.abspath(path), "sha256": sha256, "variant": args.human_labels}


@dataclass
class Learner:
    """The modules a step changes: the classifier, the meta-weight-net (None unless mwnet), their optimisers."""

    model: torch.nn.Module
    vnet: torch.nn.Module | None
    optimizer: torch.optim.Optimizer
    vnet_optimizer: torch.optim.Optimizer | None
    source: dict | None = None  # the pretrained weights the model started from (--pretrained), for config.json
    loss: object = None  # the per-sample loss of a method that trains with its own (MethodSpec.loss), else None


def optimizer_options(device):
    """How the optimisers update all their tensors at once: fused kernels on CUDA; elsewhere the multi-tensor
    (foreach) implementation, a few operations a step instead of several per parameter, with the same numbers as
    the loop over parameters (the same operations in the same order)."""
    return {"fused": True} if device.type == "cuda" else {"foreach": True}


def build_learner(args, num_classes, device, seed, class_counts=None):
    """The modules and optimisers; class_counts (of the training labels) for a method with a loss of its own."""
    torch.manual_seed(seed)
    # The fast path, the same numbers up to rounding: channels_last convolutions (cuDNN and oneDNN on the
    # CPU both run them faster), fused optimiser steps on CUDA, multi-tensor ones on the CPU.
    model = build_model(args, num_classes, image_size(args)).to(device, memory_format=torch.channels_last)
    fused = optimizer_options(device)
    sgd = dict(momentum=args.momentum, nesterov=args.nesterov, **fused)
    optimizer = torch.optim.SGD(model.parameters(), args.lr, weight_decay=args.weight_decay, **sgd)
    vnet = vnet_optimizer = None
    if method(args.method).vnet:
        vnet = VNet(1, 100, 1).to(device)
        if args.vnet_optimizer == "adam":
            vnet_optimizer = torch.optim.Adam(vnet.parameters(), args.vnet_lr, weight_decay=args.vnet_wd, **fused)
        else:
            vnet_optimizer = torch.optim.SGD(vnet.parameters(), args.vnet_lr, weight_decay=args.vnet_wd, **sgd)
    spec = method(args.method)
    loss = None if spec.loss is None else spec.loss(args, class_counts, device)
    return Learner(model, vnet, optimizer, vnet_optimizer, loss=loss)


def git_state():
    """(commit, whether tracked files differ from it, SHA-256 of `git diff HEAD`) of the checkout the package
    runs from; (None, None, None) outside a git checkout (an installed wheel) or without git."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*words):
        out = subprocess.run(["git", *words], cwd=package, capture_output=True, timeout=10)
        return out.stdout if out.returncode == 0 else None

    try:
        top = git("rev-parse", "--show-toplevel")
        # an installed package inside some other repository (a venv in a user's project) is no checkout of ours
        ours = top is not None and os.path.realpath(top.decode().strip()) == os.path.realpath(os.path.dirname(package))
        commit = git("rev-parse", "HEAD") if ours else None
        diff = git("diff", "HEAD") if commit else None
    except (OSError, subprocess.SubprocessError):
        return None, None, None
    if not commit or diff is None:
        return None, None, None
    return commit.decode().strip(), bool(diff), hashlib.sha256(diff).hexdigest() if diff else None


def environment(device):
    commit, dirty, diff = git_state()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": importlib.metadata.version("torchvision"),  # not imported: that takes a second
        "numpy": np.__version__,
        "device": str(device),
        "device_name": name,
        "cpu_threads": torch.get_num_threads(),
        "numerics": numerics(),
        "mwnet": mwnet.__version__,
        "git_commit": commit,
        "git_changes": dirty,  # tracked files edited since the commit: the numbers may come from other code
        "git_diff_sha256": diff,
        "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
    }
