"""python -m mwnet split (or python load_corrupted_data.py): build a noisy split and print what it holds.

    python -m mwnet split --dataset fashionmnist --corruption_type flip --corruption_prob 0.4
    python -m mwnet split --dataset cifar10 --data_path ./data --imb_factor 100 --num_meta 100
    python -m mwnet split --dataset cifar10 --data_path ./data --download     # fetch CIFAR once, before a cluster's runs
Writes nothing unless --out is given.
"""

import sys

import numpy as np

from mwnet.cli import Parser
from mwnet.data.catalog import SPECS, default_root, load_arrays
from mwnet.data.noise import CORRUPTION_TYPES, make_noisy_split
from mwnet.errors import UserError


def main(argv=None):
    p = Parser(description="Build a noisy split and print what it holds.")
    p.add_argument(
        "--dataset",
        default="cifar10",
        choices=[d for d, s in SPECS.items() if not s.streamed],
        help="(default: cifar10)",
    )
    p.add_argument(
        "--data_path",
        default="./data",
        help="folder holding the data (default: ./data; Fashion-MNIST: the Debian package's folder)",
    )
    p.add_argument(
        "--num_meta", type=int, default=1000, help="clean meta images, a multiple of the class count (default: 1000)"
    )
    p.add_argument(
        "--corruption_type", "-ctype", default="unif", help=f"one of {', '.join(CORRUPTION_TYPES)} (default: unif)"
    )
    p.add_argument("--corruption_prob", type=float, default=0.4, help="noise probability p in [0, 1] (default: 0.4)")
    p.add_argument(
        "--imb_factor",
        type=float,
        default=None,
        help="largest class / smallest class for long-tailed data (default: balanced)",
    )
    p.add_argument("--seed", type=int, default=1, help="(default: 1, the original's split)")
    p.add_argument("--download", action="store_true", help="download CIFAR with torchvision when it is missing")
    p.add_argument("--out", default=None, help="write meta_idx, train_idx, clean and noisy labels to this .npz")
    args = p.parse_args(argv)
    images, labels, coarse = load_arrays(args.dataset, default_root(args.dataset, args.data_path), True, args.download)
    K = SPECS[args.dataset].num_classes
    meta_idx, train_idx, noisy = make_noisy_split(
        labels, K, args.num_meta, args.corruption_type, args.corruption_prob, args.seed, coarse, args.imb_factor
    )
    clean = labels[train_idx]
    print(f"{args.dataset}: {len(images)} training images -> meta {len(meta_idx)}, train {len(train_idx)}")
    print(
        f"actual share of wrong labels: {np.mean(noisy != clean):.4f} ({args.corruption_type}, p={args.corruption_prob})"
    )
    print("training images per class:", np.bincount(clean, minlength=K).tolist())
    if args.out:
        from mwnet.runs.run_files import save_npz_atomic

        save_npz_atomic(args.out, meta_idx=meta_idx, train_idx=train_idx, clean_labels=clean, noisy_labels=noisy)
        print(f"wrote {args.out}")


def command(argv=None):
    """The command line's exit: 0, or the one-line error (exit code 1, as the original's script)."""
    try:
        main(argv)
    except UserError as e:
        return f"error: {e}"
    return 0


if __name__ == "__main__":
    sys.exit(command())
