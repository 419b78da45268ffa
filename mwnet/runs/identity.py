"""A run's identity: which of its flags change its numbers (and so which runs are one configuration, for
resume, the runner, the tables and the figures), and its default name."""

import hashlib
import json
import os
import re

from mwnet.errors import UserError

_MISSING = "(absent)"

# Flags that do not change a run's numbers: the only ones that may differ between a run and the command
# that resumes it, evaluates it, or (in the runner) counts it as done.
FREE_FLAGS = (
    "out",
    "name",
    "resume",
    "like",
    "evaluate",
    "device",
    "data_path",
    "download",
    "print_freq",
    "prefetch",
    "tensorboard",
    "checkpoint_every",
    "accept_other_data",
    "workers",
)
# What config.json records beside the flags.
RECORDED = ("seeds", "noise_rate", "vnet_loss_grid", "data_fingerprint", "noise_source", "model_source", "world_size")
RECORDED += ("environment", "train_subset_drawn", "folder", "vnet_curve_init")

# Flags added since runs were first made, with the value that does what every run did before them: a config
# without one is read as having it (resume, the runner's and the summary's comparisons).
ADDED_FLAGS = {"protocol": None, "train_subset": 0, "meta_source": "clean", "clean_warmup": False}
ADDED_FLAGS.update(meta_from="outside", exclude="", exclude_top=0)
ADDED_FLAGS.update(focal_gamma=1.0, cb_beta=0.9999, la_tau=1.0, finetune_iters=100)


def numbers_config(config):
    """The flags that change a run's numbers (every flag but FREE_FLAGS), without what config.json adds; a flag
    added since the run was made at the value every run had before it; --warmup only where it counts (a
    selected meta set)."""
    c = {**ADDED_FLAGS, **{k: v for k, v in config.items() if k not in FREE_FLAGS and k not in RECORDED}}
    if c["meta_source"] == "clean" and not c["clean_warmup"]:
        c.pop("warmup", None)
    return c


def config_differences(there, here, leave_out=()):
    """'flag value-there vs value-here' for each numbers-changing flag that differs (but those left out)."""
    a, b = numbers_config(there), numbers_config(here)
    keys = sorted(k for k in set(a) | set(b) if k not in leave_out and a.get(k, _MISSING) != b.get(k, _MISSING))
    return [f"{k} {a.get(k, _MISSING)} vs {b.get(k, _MISSING)}" for k in keys]


def table_config(config):
    """numbers_config as the tables and figures tell configurations apart: a user's folder (--dataset folder, whose
    --data_path is the dataset) adds its name and the digest of its lists (config.json's data_fingerprint), so
    that runs on two folders are never one row or one curve."""
    c = numbers_config(config)
    if config.get("folder") is not None:  # recorded by every run on a folder (data/folder.py), and by no other
        name = os.path.basename((config.get("folder") or {}).get("path") or "?")
        c["data"] = f"{name} ({str(config.get('data_fingerprint'))[:8]})"
        for flag in ("corruption_type", "corruption_prob"):  # refused for a folder: its labels are its own
            c.pop(flag, None)
    return c


def config_key(config, leave_out=("seed",)):
    """A hashable key of a configuration: runs with equal keys differ only in `leave_out` and free flags."""
    return json.dumps({k: v for k, v in table_config(config).items() if k not in leave_out}, sort_keys=True)


def merge_given(stored, given, source):
    """The flags a resumed or evaluated run goes on with: its own, except the free flags given beside it.
    A numbers-changing flag given with another value is refused, every difference named in one line."""
    diffs = [k for k in sorted(given) if k not in FREE_FLAGS and stored.get(k, _MISSING) != given[k]]
    if diffs:
        theirs = ", ".join(f"--{k} {stored.get(k, _MISSING)}" for k in diffs)
        yours = ", ".join(f"--{k} {given[k]}" for k in diffs)
        raise UserError(
            f"{source} was made with {theirs}, not {yours}; leave those flags out to go on with the run's own, or start a new run with another --out"
        )
    flags = {k: v for k, v in stored.items() if k not in RECORDED}
    flags.update(given)
    return flags


# Short forms of flags in run names (others go by their own name).
SHORT_NAMES = {
    "batch_size": "bs",
    "epochs": "ep",
    "iters": "it",
    "milestones": "ms",
    "eval_every": "ev",
    "num_meta": "meta",
    "momentum": "mom",
    "weight_decay": "wd",
    "nesterov": "nest",
    "vnet_optimizer": "vopt",
    "normalize_weights": "norm",
    "precision": "prec",
    "augment": "aug",
    "clean_warmup": "cwarm",
}
NAMED_FLAGS = 4  # more flags than this beside the defaults: a digest of them instead


def _name_value(value):
    if isinstance(value, list):
        return "_".join(_name_value(v) for v in value) or "none"
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same float: 0.05 and 0.050001 stay apart
    return "none" if value is None else str(value)


def default_run_name(config, baseline, about):
    """runs/<arch>-<dataset>-<noise or imbalance>-<method>[-<other flags>]-s<seed>: the flags that change the
    numbers and differ from `baseline` (the script's defaults for the dataset and protocol) beside the ones the
    name always says, in short forms (lr0.05-bs64), or a digest of them when they are many. Any two
    configurations get two names; the same configuration, however typed, the same name. about: the dataset's spec
    (data/catalog.py), for the name's noise part."""
    arch = config["arch"] if config["arch"] != "wrn" else f"wrn-{config['layers']}-{config['widen_factor']}"
    noise = f"{config['corruption_type']}{config['corruption_prob']:g}"
    if config["corruption_type"] == "human":
        noise = f"human-{config['human_labels']}"
    if about.noise_name:
        noise = about.noise_name
    if about.named_by_path:  # the folder's name: two folders, two names (the data_path is a free flag)
        folder = os.path.basename(os.path.normpath(os.path.abspath(config.get("data_path") or "data")))
        noise = re.sub(r"[^A-Za-z0-9_.+-]+", "_", folder).strip("._") or "data"
    if config.get("imb_factor"):
        noise = f"imb{config['imb_factor']:g}" + (f"-{noise}" if config["corruption_prob"] else "")
    if config.get("train_subset"):
        noise += f"-sub{config['train_subset']}"
    if config.get("protocol"):
        noise += f"-{config['protocol']}"
    if config.get("exclude_top"):  # the file by its path's digest: two files, two names
        path = os.path.abspath(config["exclude"])
        noise += f"-excl{config['exclude_top']}-{hashlib.sha256(path.encode()).hexdigest()[:6]}"
    said = {"arch", "dataset", "corruption_type", "corruption_prob", "human_labels", "imb_factor", "train_subset"}
    said |= {"exclude", "exclude_top"}
    said |= {"protocol", "method", "seed", "dry_run"} | (
        {"layers", "widen_factor"} if config["arch"] == "wrn" else set()
    )
    others = {k: v for k, v in sorted(numbers_config(config).items()) if k not in said and v != baseline.get(k)}
    if len(others) > NAMED_FLAGS:
        digest = hashlib.sha256(json.dumps(others, sort_keys=True, default=str).encode()).hexdigest()[:10]
        extra = f"-x{digest}"
    else:
        extra = "".join(f"-{SHORT_NAMES.get(k, k)}{_name_value(v)}" for k, v in others.items())
    dry = "-dry" if config.get("dry_run") else ""
    return f"{arch}-{config['dataset']}-{noise}-{config['method']}{extra}-s{config['seed']}{dry}"


# ---------------------------------------------------------------- the run directory, owned by one process
