"""The parser of the two scripts' flags: every original flag with its original default, plus ours (presets.py
sets the defaults that differ between the scripts)."""

import argparse
import math
import re

from mwnet.cli import Parser
from mwnet.data.catalog import SPECS
from mwnet.data.cifar_n import HUMAN_LABELS
from mwnet.data.noise import CORRUPTION_TYPES
from mwnet.engine.presets import PRECISIONS, PRESETS, PROTOCOLS
from mwnet.errors import UserError
from mwnet.method import METHODS
from mwnet.models import ARCHS


class OneLineParser(Parser):
    """argparse that reports a bad flag as a UserError: one line, exit code 2, no usage block. A negative
    number in any notation (-1e-3, -inf) is a value, not a flag, so that its check can say what is wrong.
    Flags with hyphens or underscores, and a suggestion for an unknown one: cli.Parser."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.I)

    def error(self, message):
        raise UserError(f"{message}{self.suggestion(message)} (see --help)")


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help with each flag's default, except where it says nothing: an on/off flag (its name says what it
    turns on), an empty default, or a help text that already names its default."""

    def _get_help_string(self, action):
        text = action.help or ""
        switch = action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction)
        if switch or action.default in (None, "") or "default" in text:
            return text
        return super()._get_help_string(action)


def str2bool(text):
    """The original declared --nesterov type=bool, so '--nesterov False' meant True; we parse it."""
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "y", "on"):
        return True
    if value in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def finite_float(text):
    """A float flag: NaN and the infinities pass comparisons they should fail, so they are refused here."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def epochs_type(text):
    """A number of epochs: an integer, or a fraction for a schedule shorter than the original's."""
    try:
        value = finite_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a finite number of epochs, got {text!r}") from None
    return int(value) if value.is_integer() else value


def _original_flags(p, preset):
    wrn = preset["arch"] == "wrn"
    o = p.add_argument_group("flags of the original script")
    o.add_argument(
        "--dataset",
        default="cifar10",
        choices=tuple(SPECS),  # at each parse: a dataset registered after import is a choice too
        help="dataset; folder: your own images under --data_path (README, 'Your own data')",
    )
    o.add_argument("--corruption_prob", type=finite_float, default=0.4, help="label noise probability p in [0, 1]")
    o.add_argument(
        "--corruption_type",
        "-ctype",
        default="unif",
        choices=(*CORRUPTION_TYPES, "human"),
        help="type of label noise; human: CIFAR-10N/100N's real human labels (--human_labels)",
    )
    o.add_argument("--num_meta", type=int, default=1000, help="clean meta images taken out of the training set")
    unused = " (kept for compatibility; this script counts --{})"
    o.add_argument(
        "--epochs",
        type=epochs_type,
        default=preset["epochs"],
        help="epochs to run" + (unused.format("iters") if wrn else ""),
    )
    o.add_argument(
        "--iters",
        type=int,
        default=preset["iters"],
        help="iterations to run" + ("" if wrn else unused.format("epochs")),
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
    o.add_argument("--lr", "--learning-rate", dest="lr", type=finite_float, default=0.1, help="initial learning rate")
    o.add_argument("--momentum", type=finite_float, default=0.9, help="SGD momentum")
    o.add_argument("--nesterov", type=str2bool, default=preset["nesterov"], help="Nesterov momentum (true/false)")
    o.add_argument("--weight-decay", "--wd", dest="weight_decay", type=finite_float, default=5e-4, help="weight decay")
    o.add_argument(
        "--print-freq",
        "-p",
        dest="print_freq",
        type=int,
        default=0,
        help="also print the training losses every N iterations (0: only at evaluations; each line costs a host synchronisation on a GPU)",
    )
    resnet = "" if wrn else " (unused by ResNet-32)"
    o.add_argument("--layers", type=int, default=28, help="WideResNet depth" + resnet)
    o.add_argument("--widen-factor", dest="widen_factor", type=int, default=10, help="WideResNet widen factor" + resnet)
    o.add_argument("--droprate", type=finite_float, default=0.0, help="WideResNet dropout probability" + resnet)
    o.add_argument("--no-augment", dest="augment", action="store_false", help="no crop and flip augmentation")
    o.add_argument("--resume", default="", help="run directory (or its checkpoint.pt) to continue with its own flags")
    o.add_argument("--name", default=None, help="run directory runs/<name> (default: named from the configuration)")
    o.add_argument("--seed", type=int, default=1, help="seed of the split, the noise, the model and the batches")
    o.add_argument(
        "--prefetch",
        type=int,
        default=0,
        help="kept for compatibility: the data sits on the device, there are no loader workers",
    )


def build_parser(script):
    preset = PRESETS[script]
    unit = "epochs" if preset["unit"] == "epoch" else "iterations"
    count = epochs_type if unit == "epochs" else int  # epochs may be fractional, iterations may not
    p = OneLineParser(
        prog=script,
        description=f"Meta-Weight-Net training ({'ResNet-32' if preset['arch'] == 'resnet32' else 'WideResNet'}, {unit}).",
        formatter_class=DefaultsHelpFormatter,
    )
    _original_flags(p, preset)
    n = p.add_argument_group("flags of this reproduction")
    _data_flags(n)
    _model_flags(n, preset)
    _method_flags(n, preset, unit, count)
    _baseline_flags(n)
    _run_flags(n, preset, unit, count)
    return p


def _data_flags(n):
    """Where the data is and what of it a run trains on."""
    n.add_argument(
        "--data_path",
        default="./data",
        help="folder holding cifar-10-batches-py/ or cifar-100-python/ (Fashion-MNIST: the Debian package's folder unless given; --dataset folder: train/ and test/, or train.csv and test.csv)",
    )
    n.add_argument(
        "--download",
        action="store_true",
        help="download a missing dataset through torchvision (CIFAR is downloaded when missing anyway, as the original did)",
    )
    n.add_argument("--out", default=None, help="run directory (default: runs/<name>)")
    n.add_argument(
        "--protocol",
        default=None,
        choices=tuple(PROTOCOLS),
        help="laptop: SmallCNN on a fixed 5,000-image subset of Fashion-MNIST, a run one CPU core finishes in minutes (docs/results-fashion-mnist.md); laptop_lt: the same cut to a long tail by --imb_factor, with the class-imbalance code's iteration; sets the flags not given (default: the script's own)",
    )
    n.add_argument(
        "--augment",
        dest="augment",
        action="store_true",
        default=argparse.SUPPRESS,  # --no-augment's default stands
        help="crop and flip augmentation, where --protocol laptop would turn it off (the default otherwise)",
    )
    n.add_argument(
        "--train_subset",
        type=int,
        default=0,
        help="train on a fixed class-balanced subset of this many training images, the same for every seed; the meta set comes from the images outside it (0: the whole training set)",
    )
    n.add_argument(
        "--exclude",
        default="",
        help="a run directory or its samples.csv: train without its --exclude_top most suspect training samples (clean and retrain)",
    )
    n.add_argument(
        "--exclude_top", type=int, default=0, help="with --exclude: how many of its most suspect samples to leave out"
    )
    n.add_argument(
        "--meta_from",
        default="outside",
        choices=("outside", "inside"),
        help="with --train_subset: the clean meta set from the images outside the subset, or from inside it, its images then left out of training (the original's split, on the subset)",
    )


def _model_flags(n, preset):
    """The classifier, its input size and loader processes; CIFAR-N's human labels."""
    n.add_argument(
        "--arch",
        default=preset["arch"],
        choices=ARCHS,
        help="classifier: resnet32, wrn (--layers, --widen-factor, --droprate), resnet34 (the CIFAR kind), smallcnn (--protocol laptop's)",
    )
    n.add_argument(
        "--pretrained",
        nargs="?",
        const="imagenet",
        default=None,
        help="ResNet-50: start from torchvision's ImageNet weights (no value), or from a state dict FILE",
    )
    n.add_argument(
        "--image_size",
        type=int,
        default=224,
        help="Clothing1M and --dataset folder (default 32 there, 224 with ResNet-50): the side of the random (training) or centre (test) crop, after the shorter side is resized to 256/224 of it",
    )
    n.add_argument(
        "--workers",
        type=int,
        default=None,
        help="Clothing1M and --dataset folder: loader processes per stream, training and meta each (default: the CPU count less one, at most 8)",
    )
    n.add_argument(
        "--human_labels",
        default=None,
        choices=HUMAN_LABELS,
        help="with -ctype human: the CIFAR-10N variant (aggre, worse, random1, random2, random3) or CIFAR-100N's noisy (its default)",
    )
    n.add_argument(
        "--noise_file",
        default=None,
        help="with -ctype human: the CIFAR-N label file (default: CIFAR-10_human.pt or CIFAR-100_human.pt under --data_path)",
    )


def _method_flags(n, preset, unit, count):
    """The method, its numerics, its schedule and its meta set."""
    n.add_argument(
        "--method",
        default="mwnet",
        choices=tuple(METHODS),
        help="mwnet, learning-to-reweight, plain training (erm) with the same schedule; the class-imbalance baselines: focal loss, the class-balanced loss (cb), plain training fine-tuned on the meta set (finetune), logit adjustment (la)",
    )
    n.add_argument(
        "--device", default="auto", choices=("auto", "cuda", "cpu"), help="auto: CUDA if available, else CPU"
    )
    n.add_argument(
        "--precision",
        default="fp32",
        choices=tuple(PRECISIONS),
        help="fp32: strict float32 (TF32 off), the original's numerics; tf32: TF32 convolutions and matmuls on CUDA; bf16: bf16 autocast",
    )
    n.add_argument("--milestones", type=count, nargs="*", default=preset["milestones"], help=f"lr x0.1 at these {unit}")
    n.add_argument(
        "--real_lr_ahead",
        type=count,
        default=0,
        help=f"the real step's lr schedule runs this many {unit} ahead of the virtual step's (the class-imbalance code: 1 epoch)",
    )
    n.add_argument(
        "--vnet_optimizer",
        default=preset["vnet_optimizer"],
        choices=("adam", "sgd"),
        help="meta-weight-net optimiser (sgd takes --momentum and --nesterov)",
    )
    n.add_argument("--vnet_lr", type=finite_float, default=preset["vnet_lr"], help="meta-weight-net learning rate")
    n.add_argument("--vnet_wd", type=finite_float, default=preset["vnet_wd"], help="meta-weight-net weight decay")
    n.add_argument(
        "--normalize_weights",
        action=argparse.BooleanOptionalAction,
        default=preset["normalize_weights"],
        help="weighted loss sum v_i l_i / sum v_i instead of the mean of v_i l_i",
    )
    n.add_argument(
        "--detach_vnet_input",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="feed the meta-weight-net the detached loss (the paper); --no-detach_vnet_input lets the virtual step's gradient flow through it (the class-imbalance code)",
    )
    n.add_argument(
        "--meta_source",
        default="clean",
        choices=("clean", "selected"),
        help="the meta set: --num_meta clean images taken out of the training set, or (no clean label used) the "
        "--num_meta / classes lowest-loss training images of each class by their noisy labels, selected after "
        "--warmup of plain training, which stay in the training set (CMW-Net's 'meta' mode)",
    )
    n.add_argument(
        "--warmup",
        type=count,
        default=preset["warmup"],
        help=f"--meta_source selected: {unit} of plain training before the meta set is selected (and --clean_warmup's)",
    )
    n.add_argument(
        "--clean_warmup",
        action="store_true",
        help="with a clean meta set: --warmup of plain training before the method's first step, as a selected meta set has (the original starts at once)",
    )
    n.add_argument(
        "--meta_sampling",
        default=preset["sampling"],
        choices=("epoch", "random"),
        help="meta batches: shuffled passes over the meta set, or a fresh random batch each iteration (the WRN and class-imbalance code)",
    )
    n.add_argument(
        "--imb_factor",
        type=finite_float,
        default=None,
        help="long-tailed training set: largest class / smallest class (e.g. 100; use --num_meta 10K)",
    )


def _baseline_flags(n):
    """The class-imbalance baselines' own flags (each refused with another --method: checks.py)."""
    n.add_argument("--focal_gamma", type=finite_float, default=1.0, help="--method focal: the focal loss's gamma")
    n.add_argument(
        "--cb_beta", type=finite_float, default=0.9999, help="--method cb: beta of the effective number of samples"
    )
    n.add_argument("--la_tau", type=finite_float, default=1.0, help="--method la: tau of the logit adjustment")
    n.add_argument(
        "--finetune_iters",
        type=int,
        default=100,
        help="--method finetune: iterations on clean meta batches after the schedule, at its last lr",
    )


def _run_flags(n, preset, unit, count):
    """Evaluation, checkpoints, and what else a run does."""
    n.add_argument(
        "--eval_every",
        type=count,
        default=preset["eval_every"],
        help=f"evaluate on the test set every this many {unit} (a checkpoint follows when --checkpoint_every says one is due)",
    )
    n.add_argument(
        "--checkpoint_every",
        type=finite_float,
        default=5,
        help="minutes between checkpoints at evaluations (also at the end, before an lr milestone and on a signal); 0: at every evaluation",
    )
    n.add_argument(
        "--accept_other_data",
        action="store_true",
        help="with --resume: continue although the data under --data_path differs from the data the run started with",
    )
    n.add_argument(
        "--meta_grad",
        default="jvp",
        choices=("jvp", "double_backward"),
        help="meta-gradient by forward-mode JVP or by the original's double backward",
    )
    n.add_argument("--deterministic", action="store_true", help="deterministic kernels (slower on CUDA)")
    n.add_argument(
        "--dry_run", action="store_true", help="smoke run: 2 epochs of 2 iterations (or 4 iterations), 200 test images"
    )
    n.add_argument(
        "--evaluate",
        default="",
        help="print the test loss and accuracy of a run directory, checkpoint.pt or model_best.pt, write that model's samples-it<N>.csv (the suspect labels) into its run directory, then exit",
    )
    n.add_argument(
        "--like",
        default="",
        help="a new run with the flags of this run directory (or its config.json); flags given override them (another --seed, say)",
    )
    n.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard events to <run>/tb (needs: pip install tensorboard)",
    )
