"""Where a run stands, and what its checkpoint carries: the loop's progress, the tallies since the last
evaluation, and the checkpoint's contents built from them and the modules, and restored into them.
run_files.py writes and reads the checkpoint; this module says what is in it.
"""

import math
from dataclasses import dataclass, field, fields

import torch

from mwnet.errors import UserError
from mwnet.runs.separation import auroc
from mwnet.untrusted import check_state


class Tally:
    """Sums since the last evaluation, kept on the device: no host synchronisation per iteration."""

    def __init__(self, device, meta=True):
        self.device = device
        self.meta = meta  # False for plain training: it has no meta loss, recorded as null
        self.reset()

    def reset(self):
        self.sums = torch.zeros(7, dtype=torch.float64, device=self.device)
        self.steps = self.meta_steps = 0

    def add(self, out, noisy, clean, meta=True):
        """One iteration's losses, and the weights of its samples known to be noisy and known to be clean.
        meta False: a step without a meta loss (a warm-up's plain step), which the mean meta loss leaves out."""
        w = out["weights"].double()
        noisy, clean = noisy.double(), clean.double()
        row = [
            out["loss"].double(),
            out["meta_loss"].double(),
            out["losses"].double().mean(),
            (w * clean).sum(),
            clean.sum(),
            (w * noisy).sum(),
            noisy.sum(),
        ]
        self.sums += torch.stack(row)
        self.steps += 1
        self.meta_steps += bool(meta)

    def read(self):
        """(means since the last evaluation, whether every loss and weight summed was finite): one read-back."""
        s = self.sums.tolist()
        n = max(self.steps, 1)
        summary = {
            "train_loss": s[0] / n,
            "meta_loss": s[1] / self.meta_steps if self.meta and self.meta_steps else None,
            "train_ce": s[2] / n,
            "weight_clean": s[3] / s[4] if s[4] else None,
            "weight_noisy": s[5] / s[6] if s[6] else None,
        }
        return summary, all(math.isfinite(v) for v in s)

    def state_dict(self):
        return {"sums": self.sums.cpu(), "steps": self.steps, "meta_steps": self.meta_steps}

    def load_state_dict(self, state):
        self.sums, self.steps = state["sums"].to(self.device), state["steps"]
        self.meta_steps = state.get("meta_steps", self.steps)  # checkpoints made before warm-ups existed


@dataclass
class Progress:
    """Where the loop stands; a checkpoint carries it (the modules and loaders beside it)."""

    last_loss: torch.Tensor  # each training sample's last loss and weight in training (NaN: never drawn)
    last_weight: torch.Tensor
    step: int = 0  # iterations done
    best_acc: float | None = None
    best_step: int | None = None
    last_acc: float | None = None
    elapsed: float = 0.0  # seconds of training and evaluation, over every session
    train_seconds: float = 0.0  # seconds of training iterations alone
    records: list = field(default_factory=list)  # every evaluation's metrics line so far
    # The last epoch's draws: a row per iteration of the last len(train loader), iteration i in row i % rows,
    # the batch's indices (-1 past a short batch) and weights. None in checkpoints made before it was kept.
    recent_index: torch.Tensor | None = None
    recent_weight: torch.Tensor | None = None
    # Each sample's history in training, float64 (windows, 3, n): the sums of its losses and of its margins and the
    # count of its draws, over every draw (window 0) and over those before the first lr drop (window 1). None in
    # checkpoints made before it was kept.
    history: torch.Tensor | None = None
    best_meta_acc: float | None = None  # the highest accuracy on the meta set at an evaluation, and where
    best_meta_step: int | None = None

    @classmethod
    def new(cls, n, device, batches, batch_size):
        progress = cls(torch.full((n,), math.nan, device=device), torch.full((n,), math.nan, device=device))
        progress.recent_index, progress.recent_weight = recent_draws(batches, batch_size, device)
        progress.history = torch.zeros((len(WINDOWS), 3, n), dtype=torch.float64, device=device)
        return progress

    def record(self, step, idx, losses, weights, margins=None, early=False):
        """The weights, losses and margins of iteration `step`'s whole batch; early: before the first lr drop."""
        self.last_loss[idx], self.last_weight[idx] = losses, weights
        row = step % len(self.recent_index)
        self.recent_index[row] = -1
        self.recent_index[row, : len(idx)] = idx
        self.recent_weight[row, : len(idx)] = weights
        if self.history is not None and margins is not None:
            drawn = torch.stack([losses.double(), margins.double(), torch.ones_like(losses, dtype=torch.float64)])
            for window in range(len(WINDOWS) if early else 1):  # a batch's indices are distinct: exact sums
                self.history[window].index_add_(1, idx, drawn)

    def history_means(self):
        """{column: each sample's mean} of the loss and the margin in each window (NaN: never drawn in it), float64
        on the CPU; None from a checkpoint made before the history was kept."""
        if self.history is None:
            return None
        sums = self.history.cpu()
        out = {}
        for w, window in enumerate(WINDOWS):
            count = sums[w, 2]
            for r, what in enumerate(("loss", "margin")):
                out[f"{window}_{what}"] = torch.where(count > 0, sums[w, r] / count, math.nan).numpy()
        return out

    def epoch_weight(self):
        return epoch_weight(self.recent_index, self.recent_weight, len(self.last_weight))

    def separation(self, is_noisy, is_clean):
        """How well each training sample's latest loss in training (what the meta-weight-net was fed at its last
        draw) tells the corrupted labels from the clean ones, and how well its latest weight does: the AUROC of
        the loss and of the negated weight as scores of a corrupted label (0.5: no better than chance; 1: every
        corrupted label above every clean one). None where no sample of either kind is known and drawn."""
        noisy, clean = is_noisy.cpu().numpy(), is_clean.cpu().numpy()
        loss, weight = self.last_loss.cpu().double().numpy(), self.last_weight.cpu().double().numpy()
        return {"loss_auroc": auroc(loss, noisy, clean), "weight_auroc": auroc(-weight, noisy, clean)}

    def state_dict(self):
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in TENSORS:
            state[name] = None if state[name] is None else state[name].cpu()
        return state

    @classmethod
    def from_state(cls, state, device, batches, batch_size):
        progress = cls(**state)
        n = len(progress.last_loss)
        if progress.history is not None and tuple(progress.history.shape) != (len(WINDOWS), 3, n):
            raise ValueError(f"a history of shape {tuple(progress.history.shape)} for {n} samples")
        if progress.recent_index is None:  # its weights before the resume are not known: NaN where not drawn since
            progress.recent_index, progress.recent_weight = recent_draws(batches, batch_size, device)
        for name in TENSORS:
            if getattr(progress, name) is not None:  # a history missing from an older checkpoint stays missing
                setattr(progress, name, getattr(progress, name).to(device))
        return progress


TENSORS = ("last_loss", "last_weight", "recent_index", "recent_weight", "history")
WINDOWS = ("mean", "early")  # every draw in training; the draws before the first lr drop (samples.csv's names)


def recent_draws(batches, batch_size, device):
    return (
        torch.full((batches, batch_size), -1, dtype=torch.long, device=device),
        torch.zeros((batches, batch_size), device=device),
    )


def epoch_weight(recent_index, recent_weight, n):
    """Each training sample's mean weight over the last epoch (the iterations that `recent_index` holds), in
    float64 on the CPU; NaN where the sample was not drawn in them."""
    index, weight = recent_index.cpu(), recent_weight.cpu().double()
    drawn = index >= 0
    total = torch.zeros(n, dtype=torch.float64).index_add_(0, index[drawn], weight[drawn])
    count = torch.zeros(n, dtype=torch.float64).index_add_(0, index[drawn], torch.ones_like(weight[drawn]))
    return (total / count).numpy()  # 0 / 0: NaN


def checkpoint_state(config, progress, learner, data, tally):
    m = learner
    return {
        "config": config,
        "device_type": data.test.device.type,
        "progress": progress.state_dict(),
        "model": m.model.state_dict(),
        "vnet": None if m.vnet is None else m.vnet.state_dict(),
        "optimizer": m.optimizer.state_dict(),
        "vnet_optimizer": None if m.vnet_optimizer is None else m.vnet_optimizer.state_dict(),
        "train_loader": data.train.state_dict(),
        "meta_loader": None if data.meta is None else data.meta.state_dict(),
        "tally": tally.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "data_fingerprint": data.fingerprint,  # resume checks that it reads the same data
        "meta_selection": data.selection,  # --meta_source selected, once made: resume attaches the same meta set
    }


def restore(state, learner, data, tally, path):
    """The modules, optimisers, loaders, tallies and generators as the checkpoint at `path` left them; a
    checkpoint that does not fit this run's model or data is one line, refused before anything is loaded."""
    m, fix = learner, "the run directory is damaged: start a new run"
    check_state(m.model, state["model"], "the model of this run", fix, name=path)
    if m.vnet is not None:
        check_state(m.vnet, state["vnet"], "the meta-weight-net of this run", fix, name=path)
    perm = state["train_loader"].get("perm") if isinstance(state["train_loader"], dict) else None
    if isinstance(perm, torch.Tensor) and len(perm) != len(data.train.labels):
        raise UserError(
            f"{path} samples from {len(perm)} training images, this run has {len(data.train.labels)}; {fix}"
        )
    try:
        m.model.load_state_dict(state["model"])
        m.optimizer.load_state_dict(state["optimizer"])
        if m.vnet is not None:
            m.vnet.load_state_dict(state["vnet"])
            m.vnet_optimizer.load_state_dict(state["vnet_optimizer"])
        data.train.load_state_dict(state["train_loader"])
        if data.meta is not None:
            data.meta.load_state_dict(state["meta_loader"])
        tally.load_state_dict(state["tally"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        return Progress.from_state(state["progress"], data.test.device, len(data.train), data.train.batch_size)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as e:
        raise UserError(f"{path} does not fit this run ({type(e).__name__}: {str(e)[:80]}); {fix}") from None
