"""What a run leaves in its directory, each file written atomically (README, "Run files").

config.json    every argument, library versions, device, git commit
metrics.jsonl  one JSON line per evaluation
results.json   best and last test accuracy, noise rate, speed, wall time
split.npz      meta and training indices, clean and noisy labels
weights.npz    each training sample's last loss and weight, with its noisy-or-not flag
checkpoint.pt  everything needed to continue (--resume)
"""

import json
import os
import pickle
import platform
import subprocess
import sys

import numpy as np
import torch

from load_corrupted_data import UserError, save_npz_atomic, write_atomic
from options import RESUME_FREE

CHECKPOINT = "checkpoint.pt"


def write_json(path, obj):
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")

    write_atomic(path, write)


def read_metrics(run_dir):
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def append_metrics(run_dir, record):
    with open(os.path.join(run_dir, "metrics.jsonl"), "a") as f:
        f.write(json.dumps(record) + "\n")


def truncate_metrics(run_dir, step):
    """On resume: keep the evaluations up to the checkpoint's step (a later line was not saved with it)."""
    kept = [r for r in read_metrics(run_dir) if r["iteration"] <= step]

    def write(tmp):
        with open(tmp, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)

    write_atomic(os.path.join(run_dir, "metrics.jsonl"), write)


def git_commit():
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment(device):
    import torchvision

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "git_commit": git_commit(),
        "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
    }


def resolve_run_dir(args):
    """The run directory and the checkpoint to resume from (or None), refusing to mix two runs."""
    if args.resume:
        path = args.resume
        checkpoint = os.path.join(path, CHECKPOINT) if os.path.isdir(path) else path
        if not os.path.isfile(checkpoint):
            raise UserError(
                f"--resume {path}: no checkpoint there ({checkpoint} does not exist; a run stopped before its first evaluation starts again without --resume)"
            )
        return args.out or os.path.dirname(os.path.abspath(checkpoint)), checkpoint
    run_dir = args.out or os.path.join("runs", args.name)
    # A directory holds a run once it has a checkpoint or results; one stopped before its first
    # evaluation has only its config and split, which a new start rewrites.
    if any(os.path.exists(os.path.join(run_dir, f)) for f in (CHECKPOINT, "metrics.jsonl", "results.json")):
        raise UserError(
            f"{run_dir} already holds a run; continue it with --resume {run_dir}, or choose another --out or --name"
        )
    return run_dir, None


def save_checkpoint(run_dir, state):
    write_atomic(os.path.join(run_dir, CHECKPOINT), lambda tmp: torch.save(state, tmp))


def load_checkpoint(path, config):
    """The checkpoint's state, after checking that it was made by this configuration."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # plain data only: loading runs no code
        saved = state["config"]
    except (
        OSError,
        RuntimeError,
        EOFError,
        KeyError,
        TypeError,
        ValueError,
        AttributeError,
        ImportError,
        pickle.UnpicklingError,
    ) as e:
        raise UserError(
            f"{path} is not a readable checkpoint of this project ({type(e).__name__}); start a new run instead"
        ) from None
    diffs = [k for k in sorted(set(saved) | set(config)) if k not in RESUME_FREE and saved.get(k) != config.get(k)]
    if diffs:
        k = diffs[0]
        more = f" and {len(diffs) - 1} more difference(s)" if len(diffs) > 1 else ""
        raise UserError(
            f"{path} was made with {k}={saved.get(k)!r}, not {config.get(k)!r}{more}; resume with the run's own flags, or start a new run with another --out"
        )
    return state


def save_split(run_dir, data):
    save_npz_atomic(
        os.path.join(run_dir, "split.npz"),
        meta_idx=data.meta_idx,
        train_idx=data.train_idx,
        clean_labels=data.clean_labels,
        noisy_labels=data.noisy_labels,
    )


def save_weights(run_dir, data, last_loss, last_weight):
    save_npz_atomic(
        os.path.join(run_dir, "weights.npz"),
        train_idx=data.train_idx,
        clean_labels=data.clean_labels,
        noisy_labels=data.noisy_labels,
        is_noisy=data.clean_labels != data.noisy_labels,
        loss=last_loss,
        weight=last_weight,
    )
