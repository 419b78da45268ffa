"""--meta_source selected: a meta set chosen from the noisy training data, for when no clean labels are at hand
(CMW-Net's "meta" mode, Shu et al., TPAMI 2023). After --warmup of plain training, every training image's loss
is computed (evaluation mode, no augmentation) against its noisy label, and for each class by the noisy labels
the --num_meta / classes images of lowest loss become the meta set, with their noisy labels; they stay in the
training set. Nothing here reads a clean label but `purity`, which measures the selection for the record.
"""

import dataclasses

import numpy as np
import torch

from mwnet.engine.samples import predictions
from mwnet.errors import UserError


def training_losses(model, loader, world=None):
    """Each training image's cross-entropy against its noisy label, in the loader's order, in evaluation mode."""
    return predictions(model, loader, world)[0]


def lowest_per_class(losses, noisy, k, per_class):
    """Positions of the `per_class` lowest losses of each class by `noisy`, ties by position; ascending."""
    chosen = []
    for c in range(k):
        members = np.flatnonzero(noisy == c)
        order = np.lexsort((members, losses[members]))  # by loss, then by position: the same on every machine
        chosen.append(members[order[:per_class]])
    return np.sort(np.concatenate(chosen))


def purity(positions, noisy, clean, k):
    """The share of selected images whose noisy label is the true one, overall and per class (by noisy label),
    among those whose clean label is known (Clothing1M's are known for a few only); None where none is."""
    known = clean[positions] >= 0
    right = noisy[positions] == clean[positions]
    overall = float(right[known].mean()) if known.any() else None
    per_class = []
    for c in range(k):
        mine = known & (noisy[positions] == c)
        per_class.append(float(right[mine].mean()) if mine.any() else None)
    return {"purity": overall, "purity_per_class": per_class, "known": int(known.sum())}


def select(s):
    """Make the selection from the model as it stands and share it from process 0: its record, and the run's data
    with the meta set attached."""
    args, data, world = s.args, s.data, s.world
    k, per_class = data.num_classes, args.num_meta // data.num_classes
    losses = training_losses(s.learner.model, data.training_loader(), world)
    positions = torch.as_tensor(lowest_per_class(losses.cpu().numpy(), data.noisy_labels, k, per_class))
    positions = world.share_from_first(positions.to(data.test.device)).cpu().numpy()
    record = {"iteration": s.progress.step, "warmup": args.warmup, "positions": positions.tolist()}
    record["indices"] = data.train_idx[positions].tolist()  # into the dataset's training set, as split.npz's
    record.update(purity(positions, data.noisy_labels, data.clean_labels, k))
    return record, attach(args, data, world, s.seeds, record)


def attach(args, data, world, seeds, record, source=None):
    """The meta set of a selection (made now, or read back from the checkpoint `source`): a loader over those
    training images with their noisy labels, as a clean meta set's loader would be (its sampling, its seed). Returns
    the run's data with it."""
    positions = np.asarray(record.get("positions", []) if isinstance(record, dict) else [])
    if source and (
        positions.shape != (args.num_meta,)
        or positions.dtype.kind not in "iu"
        or not (0 <= positions).all()
        or not (positions < len(data.train_idx)).all()
    ):
        raise UserError(
            f"{source} holds no selected meta set of {args.num_meta} training images; the run directory is damaged: start a new run"
        )
    meta = data.training_loader(positions.astype(np.int64), args.augment, args.meta_sampling, seeds[2])
    meta.part = (world.rank, world.size)
    return dataclasses.replace(data, meta=meta, meta_idx=data.train_idx[positions], selection=record)
