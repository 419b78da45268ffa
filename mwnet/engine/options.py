"""Command-line flags of the two scripts: every original flag with its original default, plus ours.

Each script is a preset: MW-Net.py (ResNet-32, epochs) and train_WRN-28-10_Meta_PGC.py (WRN-28-10,
iterations). With no flags each does what its original does (docs/usage.md, "The two scripts"). Every value
is checked here, before any data is read or any file written.
"""

import argparse
import math
import re

from mwnet.cli import Parser
from mwnet.data.catalog import DATASETS, spec
from mwnet.data.cifar_n import HUMAN_LABELS, VARIANTS
from mwnet.data.noise import CORRUPTION_TYPES
from mwnet.errors import UserError
from mwnet.method import METHODS, method
from mwnet.models import ARCHS

PRESETS = {
    "MW-Net.py": {
        "arch": "resnet32",
        "unit": "epoch",  # the schedule, --milestones and --eval_every count epochs
        "sampling": "epoch",  # shuffled passes over the training set (and over the meta set)
        "epochs": 120,
        "iters": 60000,  # declared by the original, unused: it counts epochs
        "milestones": [80, 100],
        "nesterov": False,  # the original declared True but never passed it to its optimiser
        "vnet_optimizer": "adam",
        "vnet_lr": 1e-3,
        "vnet_wd": 1e-4,
        "normalize_weights": False,
        "eval_every": 1,
        "warmup": 10,  # --meta_source selected: epochs of plain training before the meta set is selected
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
        "warmup": 4000,  # iterations: about 10 epochs of batch 100 on the 49,000 training images
    },
}
DERIVED = ("script", "unit", "sampling")  # set from the preset, not flags
LAPTOP_EPOCHS, LAPTOP_MILESTONES = 40, [24, 32]
# --protocol laptop: a run a CPU finishes (docs/results-fashion-mnist.md, "The laptop protocol"): the small
# classifier on a fixed class-balanced subset of 5,000 Fashion-MNIST training images, the clean meta set (2 %
# of them, the paper's proportion) from the images outside it, lr 0.02 (a network of its kind did not train at 0.1), x0.1 at
# 60 % and 80 % of the run, no augmentation; for the flags not given. Chosen by plain training's curve under 60 %
# uniform noise: it peaks early, then memorises the noise.
PROTOCOLS = {
    "laptop": {
        "dataset": "fashionmnist",
        "arch": "smallcnn",
        "train_subset": 5000,
        "num_meta": 100,
        "lr": 0.02,
        "augment": False,  # with crop and flip, plain training had not begun to memorise after 40 epochs
        "epoch": {"epochs": LAPTOP_EPOCHS, "milestones": LAPTOP_MILESTONES, "eval_every": 1},
        "iter": {
            "iters": LAPTOP_EPOCHS * 50,
            "milestones": [m * 50 for m in LAPTOP_MILESTONES],
            "eval_every": 50,
            "warmup": 500,
        },
    }
}
# --precision: (TF32 allowed for float32 convolutions and matmuls on CUDA, bf16 autocast)
PRECISIONS = {"fp32": (False, False), "tf32": (True, False), "bf16": (False, True)}


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
        choices=DATASETS,
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
        help="laptop: SmallCNN on a fixed 5,000-image subset of Fashion-MNIST, a run one CPU core finishes in minutes (docs/results-fashion-mnist.md); sets the flags not given (default: the script's own)",
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
    n.add_argument(
        "--method",
        default="mwnet",
        choices=tuple(METHODS),
        help="mwnet, learning-to-reweight, or plain training (erm) with the same schedule",
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
    return p


def apply_preset(args, preset, unit, given):
    """A preset's values for the flags not given; its "epoch" or "iter" part by the script's unit."""
    values = {k: v for k, v in preset.items() if k not in ("epoch", "iter")}
    values.update(preset[unit])
    for k, v in values.items():
        if k not in given:
            setattr(args, k, v)


def parse_args(script, argv):
    parser = build_parser(script)
    args = parser.parse_args(argv)
    given = set(given_flags(script, argv))
    if args.like:  # the run's flags become the defaults; the presets below then leave every one of them as it is
        stored = like_flags(script, args.like)
        parser.set_defaults(**stored)
        args = parser.parse_args(argv)
        given |= set(stored)
    unit = PRESETS[script]["unit"]
    if args.protocol:
        apply_preset(args, PROTOCOLS[args.protocol], unit, given)
    data = spec(args.dataset)
    if data.preset is not None:
        typed = given_flags(script, argv)
        if {"corruption_prob", "corruption_type", "imb_factor"} & set(typed):
            raise UserError(
                f"--dataset {args.dataset} brings its own label noise; leave --corruption_prob, --corruption_type and --imb_factor out"
            )
        if args.protocol:
            raise UserError(f"--protocol {args.protocol} is not for --dataset {args.dataset}; leave one of them out")
        apply_preset(args, data.preset, unit, given)
        if args.arch != "resnet50" and "pretrained" not in given:  # ImageNet weights are ResNet-50's
            args.pretrained = None
        args.corruption_prob = 0.0  # recorded as no synthetic noise
        if data.defaults is not None:
            data.defaults(args, given)
    if args.corruption_type == "human":
        if "corruption_prob" in given_flags(script, argv):
            raise UserError(
                "--corruption_prob does not apply to -ctype human (the labels are the annotators'); leave it out"
            )
        args.corruption_prob = 0.0  # recorded as no synthetic noise
        if args.human_labels is None:
            args.human_labels = data.human_labels
    args.script = script
    args.unit = unit
    args.sampling = PRESETS[script]["sampling"]
    check_args(args)
    return args


def like_flags(script, path):
    """--like RUN: the flags RUN was made with, checked as a resume checks them, but those that name the run
    and its directory (which a new run gets for itself)."""
    import os

    from mwnet.runs.run_files import CONFIG, read_json

    file = os.path.join(path, CONFIG) if os.path.isdir(path) else path
    stored = read_json(file)
    if stored is None:
        raise UserError(f"--like {path}: no {file}; pass a run directory or its {CONFIG}")
    args = args_from_stored(script, stored, {}, f"--like {path}")
    own = ("out", "name", "resume", "evaluate", "like", *DERIVED)
    return {k: v for k, v in vars(args).items() if k not in own}


def name_baseline(args):
    """The flags of a run given only its script, dataset and protocol: what its default name leaves unsaid."""
    argv = ["--dataset", args.dataset, "--method", args.method] + (
        ["--protocol", args.protocol] if args.protocol else []
    )
    if spec(args.dataset).named_by_path:  # a folder: whether it has a meta set decides its default --meta_source
        argv += ["--data_path", args.data_path]
    return vars(parse_args(args.script, argv))


def given_flags(script, argv):
    """The flags given on the command line, by name, with their parsed values (defaults left out)."""
    parser = build_parser(script)
    unset = object()  # argparse fills in defaults only for what the namespace lacks
    namespace = argparse.Namespace(**dict.fromkeys(vars(parser.parse_args([])), unset))
    return {k: v for k, v in vars(parser.parse_args(argv, namespace)).items() if v is not unset}


def args_from_stored(script, stored, given, source):
    """The arguments of a run continued (--resume) or evaluated: its stored flags, with the free ones given."""
    from mwnet.runs.run_files import ADDED_FLAGS, FREE_FLAGS, merge_given

    if stored.get("script") != script:
        raise UserError(f"{source} was made by {stored.get('script')}; use that script")
    defaults = vars(build_parser(script).parse_args([]))
    expected = set(defaults) | set(DERIVED)
    # A free flag added since the run was made takes its default: it cannot change the run's numbers.
    stored = {**{k: defaults[k] for k in FREE_FLAGS if k in defaults}, **stored}
    # So do the flags added since whose defaults do what every run did before them (and --warmup, which a run
    # made before it, with a clean meta set, never used).
    stored = {**ADDED_FLAGS, "warmup": defaults["warmup"], **stored}
    flags = merge_given(stored, given, source)
    if set(flags) != expected:
        odd = sorted(set(flags) ^ expected)
        named = ", ".join(odd[:5]) + (f" and {len(odd) - 5} more" if len(odd) > 5 else "")
        raise UserError(f"{source} was made by another version of this code (flags differ: {named}); start a new run")
    for action in build_parser(script)._actions:
        if action.dest in flags and not _stored_value_fits(action, flags[action.dest]):
            raise UserError(
                f"{source} holds --{action.dest} {flags[action.dest]!r}, which that flag does not take; the run directory is damaged"
            )
    args = argparse.Namespace(**flags)
    check_args(args)
    return args


def _stored_value_fits(action, value):
    """Whether a value read back from a run's config is one the flag's parser could have produced."""
    if value is None:
        return action.default is None
    many = action.nargs in ("*", "+")
    if many != isinstance(value, list):
        return False
    for v in value if many else [value]:
        if isinstance(v, (dict, list)) or action.choices is not None and v not in action.choices:
            return False
        if action.nargs == 0:  # a switch: --augment, --dry_run, ...
            if not (isinstance(v, bool) or v == action.const):
                return False
            continue
        if action.type is None:
            if not isinstance(v, str):
                return False
            continue
        try:
            action.type(str(v))
        except (ValueError, TypeError, argparse.ArgumentTypeError, UserError):
            return False
    return True


def check_args(args):
    """Every value, before any data is read or file written."""
    for flag, value in {
        "--lr": args.lr,
        "--batch_size": args.batch_size,
        "--epochs": args.epochs,
        "--iters": args.iters,
        "--eval_every": args.eval_every,
    }.items():
        if not value > 0:
            raise UserError(f"{flag} must be positive, got {value}")
    nonneg = {
        "--momentum": args.momentum,
        "--weight-decay": args.weight_decay,
        "--vnet_lr": args.vnet_lr,
        "--vnet_wd": args.vnet_wd,
    }
    nonneg.update({"--num_meta": args.num_meta, "--print-freq": args.print_freq, "--real_lr_ahead": args.real_lr_ahead})
    nonneg["--checkpoint_every"] = args.checkpoint_every
    for flag, value in nonneg.items():
        if value < 0:
            raise UserError(f"{flag} must not be negative, got {value}")
    float32_max = 3.4028234663852886e38  # the optimisers compute in float32 (torch.finfo(torch.float32).max)
    for flag in ("lr", "momentum", "weight_decay", "vnet_lr", "vnet_wd"):
        if abs(getattr(args, flag)) > float32_max:
            name = "--" + flag.replace("weight_decay", "weight-decay")
            raise UserError(
                f"{name} {getattr(args, flag):g} is beyond float32's range, in which the optimisers compute; pass a smaller value"
            )
    if not 0 <= args.seed < 2**32:
        raise UserError(f"--seed must lie in [0, 2**32), got {args.seed}")
    if not 0 <= args.corruption_prob <= 1:
        raise UserError(f"--corruption_prob must lie in [0, 1], got {args.corruption_prob}")
    # What the split would refuse, checked here too, so that it is said before any data is read or downloaded.
    data = spec(args.dataset)
    k = data.num_classes  # a folder's: known once it is read (components.read_streamed)
    if args.corruption_type == "human":
        if args.dataset not in VARIANTS:
            raise UserError(
                f"-ctype human needs CIFAR-10 or CIFAR-100 (CIFAR-10N, CIFAR-100N), not --dataset {args.dataset}"
            )
        if args.human_labels not in VARIANTS[args.dataset]:
            raise UserError(
                f"-ctype human on {args.dataset}: pass --human_labels, one of {', '.join(VARIANTS[args.dataset])}"
            )
        if args.imb_factor is not None:
            raise UserError("-ctype human takes the whole training set; leave --imb_factor out")
    elif args.human_labels or args.noise_file:
        raise UserError("--human_labels and --noise_file go with -ctype human; leave them out or pass -ctype human")
    if args.corruption_type == "hierarchical" and not data.coarse_classes:
        raise UserError(
            "hierarchical noise needs CIFAR-100's coarse classes: use --dataset cifar100 or another --corruption_type"
        )
    if k and args.num_meta % k:
        raise UserError(
            f"num_meta ({args.num_meta}) must be a non-negative multiple of the number of classes ({k}), so that the meta set is class-balanced"
        )
    if args.train_subset:
        if args.train_subset < 0 or args.train_subset % k:
            raise UserError(
                f"--train_subset ({args.train_subset}) must be a positive multiple of the number of classes ({k}), so that the subset is class-balanced"
            )
        if data.streamed or args.corruption_type == "human" or args.imb_factor is not None:
            raise UserError(
                "--train_subset takes a subset of CIFAR or Fashion-MNIST with synthetic noise; leave it out with --dataset clothing1m, -ctype human or --imb_factor"
            )
    if bool(args.exclude) != bool(args.exclude_top) or args.exclude_top < 0:
        raise UserError(
            "--exclude RUN_OR_FILE and --exclude_top K (> 0) go together: the run's samples.csv and how many of its most suspect samples to leave out"
        )
    if args.meta_from == "inside" and not args.train_subset:
        raise UserError(
            "--meta_from inside takes the meta set from inside --train_subset; pass one, or leave the flag out"
        )
    if args.clean_warmup and (args.meta_source != "clean" or not method(args.method).meta_set):
        raise UserError(
            "--clean_warmup is a warm-up before MW-Net or L2RW with a clean meta set (a selected one has its own); leave it out"
        )
    if args.clean_warmup and not args.warmup > 0:
        raise UserError(f"--warmup must be positive, got {args.warmup}")
    if args.imb_factor is not None and not args.imb_factor >= 1:
        raise UserError(f"--imb_factor (largest class / smallest class) must be at least 1, got {args.imb_factor}")
    if args.nesterov and args.momentum == 0:
        raise UserError("Nesterov momentum needs --momentum > 0; pass --nesterov false or a momentum")
    if not 0 <= args.droprate < 1:
        raise UserError(f"--droprate must lie in [0, 1), got {args.droprate}")
    if args.milestones != sorted(args.milestones) or any(m < 0 for m in args.milestones):
        raise UserError(f"--milestones must be non-negative and ascending, got {args.milestones}")
    if args.arch == "wrn" and (args.layers < 10 or (args.layers - 4) % 6 or args.widen_factor < 1):
        raise UserError(
            f"--layers must be 6n + 4 for a WideResNet (10, 16, 22, 28, ...) and --widen-factor positive, got {args.layers} and {args.widen_factor}"
        )
    if args.pretrained and args.arch != "resnet50":
        raise UserError(f"--pretrained is for --arch resnet50 (ImageNet weights), not {args.arch}")
    if args.workers is not None and args.workers < 0:
        raise UserError(f"--workers must not be negative, got {args.workers}")
    if not 16 <= args.image_size <= 1024:
        raise UserError(f"--image_size must lie in [16, 1024], got {args.image_size}")
    if data.streamed and args.arch == "wrn" and args.image_size != 32:
        raise UserError(f"--arch wrn takes 32 x 32 images; pass --image_size 32, not {args.image_size}")
    if args.resume and args.evaluate:
        raise UserError("--resume and --evaluate exclude each other: --evaluate only reads a checkpoint")
    if args.meta_source == "selected":
        if not method(args.method).meta_set:
            raise UserError(
                "--meta_source selected picks a meta set for --method mwnet or l2rw; plain training has none"
            )
        if args.num_meta == 0:
            raise UserError(
                f"--meta_source selected needs --num_meta > 0, a multiple of {k or 'the number of classes'}: the size of the meta set"
            )
        if not args.warmup > 0:
            raise UserError(f"--warmup must be positive, got {args.warmup}")
    if args.tensorboard:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            raise UserError(
                "--tensorboard needs the tensorboard package: pip install tensorboard (or leave the flag out)"
            )
