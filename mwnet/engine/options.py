"""Command-line flags of the two scripts: parse_args(script, argv) gives a run's arguments, its presets applied
(presets.py), parsed (flags.py) and checked (checks.py); and the flags of a run continued, evaluated or copied.

Each script is a preset: MW-Net.py (ResNet-32, epochs) and train_WRN-28-10_Meta_PGC.py (WRN-28-10,
iterations). With no flags each does what its original does (docs/usage.md, "The two scripts"). Every value
is checked before any data is read or any file written.
"""

import argparse

from mwnet.data.catalog import spec
from mwnet.engine.checks import check_args
from mwnet.engine.flags import build_parser
from mwnet.engine.presets import DERIVED, PRECISIONS, PRESETS, PROTOCOLS, apply_preset
from mwnet.errors import UserError

__all__ = ["PRECISIONS", "PRESETS", "apply_preset", "args_from_stored", "build_parser", "check_args", "given_flags"]
__all__ += ["like_flags", "name_baseline", "parse_args"]


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
        if unit not in PROTOCOLS[args.protocol]:
            raise UserError(
                f"--protocol {args.protocol} counts epochs, as the code it follows did; run it with MW-Net.py, not {script}"
            )
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
