"""One training iteration of each method on the same machinery: Meta-Weight-Net, learning-to-reweight
(L2RW) and plain training (meta_step.py), and the class-imbalance baselines (plain training with another loss,
losses.py, or fine-tuned on the meta set at the end), each described by one MethodSpec (METHODS): what the rest of the
package asks of a method instead of comparing its name. A new method: its step function (meta_step.py, or a
module of its own) and its spec here.

This module imports no torch until a step is taken, so that the flags and the readers of run files can use it.
"""

from collections.abc import Callable
from dataclasses import dataclass, field


def _plain(learner, args, x, y, meta, lr, reduce):
    from mwnet.method.meta_step import erm_step

    return erm_step(learner.model, learner.optimizer, x, y, reduce=reduce)


def _with_loss(learner, args, x, y, meta, lr, reduce):
    from mwnet.method.meta_step import erm_step

    return erm_step(learner.model, learner.optimizer, x, y, reduce=reduce, loss=learner.loss)


def _loss_of(kind):
    def build(args, counts, device):
        from mwnet.method import losses

        return losses.make(kind, args, counts, device)

    return build


def _l2rw(learner, args, x, y, meta, lr, reduce):
    from mwnet.method.meta_step import l2rw_step

    mx, my = meta
    return l2rw_step(learner.model, learner.optimizer, x, y, mx, my, lr, meta_grad=args.meta_grad, reduce=reduce)


def _mwnet(learner, args, x, y, meta, lr, reduce):
    from mwnet.method.meta_step import mwnet_step

    mx, my = meta
    return mwnet_step(
        learner.model,
        learner.vnet,
        learner.optimizer,
        learner.vnet_optimizer,
        x,
        y,
        mx,
        my,
        lr,
        normalize=args.normalize_weights,
        meta_grad=args.meta_grad,
        detach_vnet_input=args.detach_vnet_input,
        reduce=reduce,
    )


@dataclass(frozen=True)
class MethodSpec:
    """One method: its name (--method), its name in tables and figures, whether it learns from a meta set and
    whether it has a meta-weight-net, and its iteration."""

    name: str
    label: str
    meta_set: bool  # a meta set (clean, or selected from the noisy labels) each iteration; weights per sample
    vnet: bool  # a meta-weight-net: its weighting function, weights.npz, the weights' column in samples.csv
    # step(learner, args, x, y, (meta images, meta labels) or None, lr, reduce) -> the step's outputs (meta_step.py)
    step: Callable = field(compare=False)
    # loss(args, class counts of the training labels, device) -> the per-sample loss its step trains with, made once
    loss: Callable | None = field(default=None, compare=False)
    params: tuple = ()  # the flags of its own (refused with another method)
    tunes: bool = False  # after its schedule, --finetune_iters plain steps on clean meta batches (fine-tuning)

    @property
    def reads_meta(self):
        """Whether its runs take a clean meta set (each iteration, or to fine-tune on)."""
        return self.meta_set or self.tunes


METHODS = {
    spec.name: spec
    for spec in (
        MethodSpec("mwnet", "MW-Net", meta_set=True, vnet=True, step=_mwnet),
        MethodSpec("l2rw", "L2RW", meta_set=True, vnet=False, step=_l2rw),
        MethodSpec("erm", "Plain training", meta_set=False, vnet=False, step=_plain),
        MethodSpec("focal", "Focal loss", False, False, _with_loss, _loss_of("focal"), ("focal_gamma",)),
        MethodSpec("cb", "Class-balanced loss", False, False, _with_loss, _loss_of("cb"), ("cb_beta",)),
        MethodSpec(
            "finetune", "Fine-tuning on the meta set", False, False, _plain, params=("finetune_iters",), tunes=True
        ),
        MethodSpec("la", "Logit adjustment", False, False, _with_loss, _loss_of("la"), ("la_tau",)),
    )
}
PLAIN = METHODS["erm"]  # a warm-up's iterations, and the steps before a meta set exists


def method(name):
    """The spec of a method's name (a run's --method, or config.json's "method")."""
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"no method {name!r}; one of {', '.join(METHODS)}") from None
