"""Every flag's value checked, before any data is read or any file written: one line saying what is wrong."""

from mwnet.data.catalog import spec
from mwnet.data.cifar_n import VARIANTS
from mwnet.errors import UserError
from mwnet.method import METHODS, method


def check_args(args):
    """Every value, before any data is read or file written."""
    _check_numbers(args)
    _check_data(args)
    _check_training(args)
    _check_model_and_run(args)


def _check_numbers(args):
    """The numeric flags' ranges."""
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


def _check_data(args):
    """What the split would refuse, checked here too, so that it is said before any data is read or downloaded."""
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
        if data.streamed or args.corruption_type == "human":
            raise UserError(
                "--train_subset takes a subset of CIFAR or Fashion-MNIST with synthetic noise; leave it out with --dataset clothing1m or -ctype human"
            )


def _check_training(args):
    """The flags that change what the method trains on."""
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
    _check_method_params(args)
    if args.clean_warmup and not args.warmup > 0:
        raise UserError(f"--warmup must be positive, got {args.warmup}")


def _check_model_and_run(args):
    """The classifier's shape, the schedule, the meta set's source, and what else a run does."""
    data = spec(args.dataset)
    k = data.num_classes
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


METHOD_PARAMS = {  # flag: (its range, what it must be)
    "focal_gamma": (lambda v: v >= 0, "at least 0"),
    "cb_beta": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "la_tau": (lambda v: v >= 0, "at least 0"),
    "finetune_iters": (lambda v: v >= 1, "at least 1"),
}


def _check_method_params(args):
    """A method's own flags: in range, and given to their method only (each has a default for the others)."""
    from mwnet.engine.flags import build_parser

    own, parser = method(args.method).params, build_parser(args.script)
    for flag, (ok, what) in METHOD_PARAMS.items():
        value = getattr(args, flag)
        if flag not in own and value != parser.get_default(flag):
            owner = next(m.name for m in METHODS.values() if flag in m.params)
            raise UserError(f"--{flag} is --method {owner}'s; leave it out with --method {args.method}")
        if not ok(value):
            raise UserError(f"--{flag} must be {what}, got {value}")
