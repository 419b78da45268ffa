"""Command-line flags of the two scripts: every original flag with its original default, plus ours.

Each script is a preset: MW-Net.py (ResNet-32, epochs) and train_WRN-28-10_Meta_PGC.py (WRN-28-10,
iterations). With no flags each does what its original does (README, "The two scripts").
"""

import argparse
import sys

from load_corrupted_data import CORRUPTION_TYPES, DATASETS, UserError

PRESETS = {
    "MW-Net.py": {
        "arch": "resnet32",
        "unit": "epoch",  # the schedule, --milestones and --eval_every count epochs
        "sampling": "epoch",  # shuffled passes over the training set
        "epochs": 120,
        "iters": 60000,  # declared by the original, unused: it counts epochs
        "milestones": [80, 100],
        "nesterov": False,  # the original declared True but never passed it to its optimiser
        "vnet_optimizer": "adam",
        "vnet_lr": 1e-3,
        "vnet_wd": 1e-4,
        "normalize_weights": False,
        "eval_every": 1,
    },
    "train_WRN-28-10_Meta_PGC.py": {
        "arch": "wrn",
        "unit": "iter",
        "sampling": "random",  # each iteration a fresh random batch (next(iter(loader)))
        "epochs": 60,  # declared by the original, unused: it counts iterations
        "iters": 20000,
        "milestones": [18000, 19000],
        "nesterov": True,
        "vnet_optimizer": "sgd",
        "vnet_lr": 1e-3,
        "vnet_wd": 5e-4,  # the original's meta-net SGD took --wd, 5e-4
        "normalize_weights": True,
        "eval_every": 100,
    },
}

# Flags that may differ between a checkpoint and the run that resumes it.
RESUME_FREE = {"resume", "out", "device", "print_freq", "prefetch"}


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (no usage block) and exits with 2."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(2)


def str2bool(text):
    """The original declared --nesterov type=bool, so '--nesterov False' meant True; we parse it."""
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "y", "on"):
        return True
    if value in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def epochs_type(text):
    """A number of epochs: an integer, or a fraction for a schedule shorter than the original's."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of epochs, got {text!r}") from None
    return int(value) if value.is_integer() else value


def build_parser(script):
    preset = PRESETS[script]
    unit = "epochs" if preset["unit"] == "epoch" else "iterations"
    count = epochs_type if unit == "epochs" else int  # epochs may be fractional, iterations may not
    p = OneLineParser(
        prog=script,
        description=f"Meta-Weight-Net training ({'ResNet-32' if preset['arch'] == 'resnet32' else 'WideResNet'}, {unit}).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    o = p.add_argument_group("flags of the original script")
    o.add_argument("--dataset", default="cifar10", choices=DATASETS, help="dataset")
    o.add_argument("--corruption_prob", type=float, default=0.4, help="label noise probability p in [0, 1]")
    o.add_argument("--corruption_type", "-ctype", default="unif", choices=CORRUPTION_TYPES, help="type of label noise")
    o.add_argument("--num_meta", type=int, default=1000, help="clean meta images taken out of the training set")
    o.add_argument(
        "--epochs",
        type=epochs_type,
        default=preset["epochs"],
        help="epochs to run" + ("" if unit == "epochs" else " (kept for compatibility; this script counts --iters)"),
    )
    o.add_argument(
        "--iters",
        type=int,
        default=preset["iters"],
        help="iterations to run"
        + ("" if unit == "iterations" else " (kept for compatibility; this script counts --epochs)"),
    )
    o.add_argument(
        "--start-epoch",
        dest="start_epoch",
        type=int,
        default=0,
        help="kept for compatibility, unused as in the original; use --resume",
    )
    o.add_argument(
        "--batch_size",
        "--batch-size",
        "-b",
        dest="batch_size",
        type=int,
        default=100,
        help="training and meta batch size",
    )
    o.add_argument("--lr", "--learning-rate", dest="lr", type=float, default=0.1, help="initial learning rate")
    o.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    o.add_argument("--nesterov", type=str2bool, default=preset["nesterov"], help="Nesterov momentum (true/false)")
    o.add_argument("--weight-decay", "--wd", dest="weight_decay", type=float, default=5e-4, help="weight decay")
    o.add_argument(
        "--print-freq",
        "-p",
        dest="print_freq",
        type=int,
        default=10,
        help="kept for compatibility: progress shows as a tqdm bar",
    )
    o.add_argument(
        "--layers",
        type=int,
        default=28,
        help="WideResNet depth" + ("" if preset["arch"] == "wrn" else " (unused by ResNet-32)"),
    )
    o.add_argument(
        "--widen-factor",
        dest="widen_factor",
        type=int,
        default=10,
        help="WideResNet widen factor" + ("" if preset["arch"] == "wrn" else " (unused by ResNet-32)"),
    )
    o.add_argument(
        "--droprate",
        type=float,
        default=0.0,
        help="WideResNet dropout probability" + ("" if preset["arch"] == "wrn" else " (unused by ResNet-32)"),
    )
    o.add_argument("--no-augment", dest="augment", action="store_false", help="no crop and flip augmentation")
    o.add_argument("--resume", default="", help="run directory or checkpoint.pt to continue")
    o.add_argument(
        "--name",
        default="WideResNet-28-10",
        help="name of the experiment: the run directory is runs/<name> unless --out is given",
    )
    o.add_argument("--seed", type=int, default=1, help="seed of the split, the noise, the model and the batches")
    o.add_argument(
        "--prefetch",
        type=int,
        default=0,
        help="kept for compatibility: the data sits on the device, there are no loader workers",
    )
    n = p.add_argument_group("flags of this reproduction")
    n.add_argument(
        "--data_path",
        default="./data",
        help="folder holding cifar-10-batches-py/ or cifar-100-python/ (Fashion-MNIST: the Debian package's folder unless given)",
    )
    n.add_argument("--out", default=None, help="run directory (default: runs/<name>)")
    n.add_argument(
        "--method",
        default="mwnet",
        choices=("mwnet", "l2rw", "erm"),
        help="mwnet, learning-to-reweight, or plain training (erm) with the same schedule",
    )
    n.add_argument(
        "--device", default="auto", choices=("auto", "cuda", "cpu"), help="auto: CUDA if available, else CPU"
    )
    n.add_argument("--milestones", type=count, nargs="*", default=preset["milestones"], help=f"lr x0.1 at these {unit}")
    n.add_argument(
        "--vnet_optimizer",
        default=preset["vnet_optimizer"],
        choices=("adam", "sgd"),
        help="meta-weight-net optimiser (sgd takes --momentum and --nesterov)",
    )
    n.add_argument("--vnet_lr", type=float, default=preset["vnet_lr"], help="meta-weight-net learning rate")
    n.add_argument("--vnet_wd", type=float, default=preset["vnet_wd"], help="meta-weight-net weight decay")
    n.add_argument(
        "--normalize_weights",
        action=argparse.BooleanOptionalAction,
        default=preset["normalize_weights"],
        help="weighted loss sum v_i l_i / sum v_i instead of the mean of v_i l_i",
    )
    n.add_argument(
        "--imb_factor",
        type=float,
        default=None,
        help="long-tailed training set: largest class / smallest class (e.g. 100; use --num_meta 10K)",
    )
    n.add_argument(
        "--eval_every",
        type=count,
        default=preset["eval_every"],
        help=f"evaluate on the test set every this many {unit}",
    )
    n.add_argument(
        "--meta_grad",
        default="jvp",
        choices=("jvp", "double_backward"),
        help="meta-gradient by forward-mode JVP or by the original's double backward",
    )
    n.add_argument(
        "--amp",
        default="off",
        choices=("off", "bf16"),
        help="bf16 autocast for the three steps and evaluation (off: float32, the original's numerics)",
    )
    n.add_argument("--deterministic", action="store_true", help="deterministic kernels (slower on CUDA)")
    n.add_argument(
        "--dry_run", action="store_true", help="smoke run: 2 epochs of 2 iterations (or 4 iterations), 200 test images"
    )
    return p


def parse_args(script, argv):
    args = build_parser(script).parse_args(argv)
    args.script = script
    args.arch = PRESETS[script]["arch"]
    args.unit = PRESETS[script]["unit"]
    args.sampling = PRESETS[script]["sampling"]
    check_args(args)
    return args


def check_args(args):
    positive = {
        "--lr": args.lr,
        "--batch_size": args.batch_size,
        "--epochs": args.epochs,
        "--iters": args.iters,
        "--eval_every": args.eval_every,
    }
    for flag, value in positive.items():
        if not value > 0:
            raise UserError(f"{flag} must be positive, got {value}")
    for flag, value in {
        "--momentum": args.momentum,
        "--weight-decay": args.weight_decay,
        "--vnet_lr": args.vnet_lr,
        "--vnet_wd": args.vnet_wd,
    }.items():
        if value < 0:
            raise UserError(f"{flag} must not be negative, got {value}")
    if args.nesterov and args.momentum == 0:
        raise UserError("Nesterov momentum needs --momentum > 0; pass --nesterov false or a momentum")
    if not 0 <= args.droprate < 1:
        raise UserError(f"--droprate must lie in [0, 1), got {args.droprate}")
    if args.milestones != sorted(args.milestones) or any(m < 0 for m in args.milestones):
        raise UserError(f"--milestones must be non-negative and ascending, got {args.milestones}")
    if args.arch == "wrn" and (args.layers - 4) % 6:
        raise UserError(f"--layers must be 6n + 4 for a WideResNet (16, 22, 28, 40, ...), got {args.layers}")
