"""One Meta-Weight-Net iteration, and one learning-to-reweight (L2RW) iteration, in one place.

The paper's iteration (docs/internals.md, "The meta step"), for a training batch and a clean meta batch:
  1. virtual step: w' = w - lr * d/dw [weighted loss with weights V(l_i; Θ)], plain SGD;
  2. meta step:    update Θ with dL_meta(w')/dΘ, second order through step 1;
  3. real step:    weighted loss with the updated V (no grad into V), real optimiser step on w.

Two ways to get the meta-gradient, equal up to rounding (tests/test_meta_step.py):
  "double_backward": the original's way, a create_graph gradient and a backward through it;
  "jvp" (default): since L is linear in the per-sample losses l, <dL/dw, g> = L(J g; v) with
     J = dl/dw and g = dL_meta/dw'. So dL_meta/dΘ = -lr * d/dΘ L(u; V(l; Θ)), u = J g, one
     forward-mode Jacobian-vector product: the model run on the tangents alone from the recorded values
     of step 1's forward (replay.py), or dual tensors of torch.autograd.forward_ad through
     torch.func.functional_call where replay's rules do not cover the model. Step 3 reuses step 1's
     forward (same w, batch and BatchNorm mode), so no double backward and fewer FLOPs.
With detach_vnet_input=False (the class-imbalance code, which feeds V the loss itself) the virtual
step's gradient is J^T c with c_i = dL/dl_i taken through V too, and dL_meta/dΘ = -lr d/dΘ <u, c>.
Steps 1-2 never touch the real model: its parameters change in step 3 only, and its BatchNorm
running statistics once per iteration, as one training-mode forward of the batch changes them.
Nothing here reads a value back to the host.
"""

import contextlib
import warnings

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call
from torch.overrides import TorchFunctionMode

from mwnet.method.replay import Tape, batch_norm_tangent, loss_tangent

META_GRADS = ("jvp", "double_backward")
# torch's forward-mode AD scripts its own decompositions on first use and warns about that itself.
warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)


@contextlib.contextmanager
def batch_stats_only(model):
    """BatchNorm in training mode normalises with batch statistics and leaves its buffers alone.

    For the virtual and meta forwards, which the original ran on a throwaway copy of the model.
    """
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m in layers:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in layers:
            m.track_running_stats = True


def weighted_loss(losses, weights, normalize=False, reduce=None):
    """sum v_i l_i / n, or sum v_i l_i / sum v_j when normalised (unnormalised if that sum is 0). With a Reduce,
    this process's part of it: its sum over the global n, or over the global sum of the weights."""
    total = (losses * weights).sum()
    if not normalize:
        return total / (losses.shape[0] if reduce is None else reduce.count(losses.shape[0], losses.device))
    norm = weights.sum() if reduce is None else reduce.sum(weights.sum())
    return total / torch.where(norm != 0, norm, torch.ones_like(norm))


def sample_weights(vnet, losses):
    """V(l_i; Θ) for each per-sample loss, fed the detached losses as the paper says."""
    return vnet(losses.detach().unsqueeze(1)).squeeze(1)


def loss_coefficients(vnet, losses, normalize=False):
    """c_i = dL/dl_i of L = weighted_loss(l, V(l; Θ)) with V fed the loss itself (the class-imbalance
    code), as a function of Θ: the virtual step's gradient is sum_i c_i dl_i/dw."""
    loss = losses.detach().requires_grad_()
    weights = vnet(loss.unsqueeze(1)).squeeze(1)
    (c,) = torch.autograd.grad(weighted_loss(loss, weights, normalize), loss, create_graph=True)
    return c


def margins(logits, targets):
    """Each sample's logit of its given label minus the largest other logit (negative: the model prefers another
    class), detached, in float32: the history behind samples.csv's margins (Pleiss et al.'s area under the margin)."""
    logits = logits.detach().float()
    given = logits.gather(1, targets.unsqueeze(1)).squeeze(1)
    others = logits.scatter(1, targets.unsqueeze(1), float("-inf")).amax(1)
    return given - others


def _losses(model, params, inputs, targets):
    return F.cross_entropy(functional_call(model, params, (inputs,)), targets, reduction="none")


def _meta_loss(model, params, meta_inputs, meta_targets, reduce=None):
    """The mean cross-entropy on the meta batch (with a Reduce: this process's part of the global mean)."""
    with batch_stats_only(model):
        logits = functional_call(model, params, (meta_inputs,))
    if reduce is None:
        return F.cross_entropy(logits, meta_targets)
    return F.cross_entropy(logits, meta_targets, reduction="sum") / reduce.count(len(meta_targets), logits.device)


def _meta_grad_wrt_virtual(model, params, grads, lr, meta_inputs, meta_targets, reduce=None):
    """g = dL_meta/dw' at w' = w - lr * grads (w' = w where grads is None), with the meta loss (both detached;
    summed over the processes). w - lr * grads in two multi-tensor operations, whatever the number of parameters:
    the same multiplication and subtraction, element by element, as one per parameter."""
    values = [p.detach() for p in params.values()]
    if grads is not None:
        values = torch._foreach_sub(values, torch._foreach_mul(list(grads), lr))
    virtual = {k: v.detach().requires_grad_() for k, v in zip(params, values, strict=True)}
    meta_loss = _meta_loss(model, virtual, meta_inputs, meta_targets, reduce)
    g = torch.autograd.grad(meta_loss, list(virtual.values()))
    if reduce is not None:
        g, meta_loss = reduce.sum_all(g), reduce.sum(meta_loss.detach())
    return dict(zip(virtual, g, strict=True)), meta_loss.detach()


class _BatchNormTangent(torch.autograd.Function):
    """Training-mode BatchNorm on the batch's statistics (no running ones), for the dual-tensor forward-mode pass
    only: its tangent in 5 operations where torch's formula takes 21 (replay.batch_norm_tangent)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        y, mean, invstd = torch.native_batch_norm(x, weight, bias, None, None, True, 0.0, eps)
        ctx.save_for_forward(x, weight, mean, invstd)
        ctx.eps = eps
        return y

    @staticmethod
    def jvp(ctx, x_t, weight_t, bias_t, _):
        x, weight, mean, invstd = ctx.saved_tensors
        return batch_norm_tangent(x, weight, mean, invstd, ctx.eps, x_t, weight_t, bias_t)


class _LeanBatchNormTangents(TorchFunctionMode):
    """Inside the forward-mode pass: training-mode BatchNorm without running statistics, affine, in float32 or
    float64, through _BatchNormTangent; every other call (and any other BatchNorm) as it is."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.batch_norm:
            call = dict(
                zip(("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps"), args)
            )
            call.update(kwargs)
            x, w, b = call["input"], call.get("weight"), call.get("bias")
            lean = call.get("running_mean") is None and call.get("running_var") is None and call.get("training")
            if (
                lean
                and w is not None
                and b is not None
                and x.dtype in (torch.float32, torch.float64)
                and w.dtype == x.dtype
            ):
                return _BatchNormTangent.apply(x, w, b, call.get("eps", 1e-5))
        return func(*args, **kwargs)


def _jvp_losses(model, params, inputs, targets, direction, tape=None, logits=None):
    """u = J direction: forward-mode derivative of the per-sample losses at `params`.

    With the `tape` of the step's first forward (logits = model(inputs) at these params, recorded): from that
    forward's values, the model at w not computed again (replay.py), where the tape's rules cover the model.
    Otherwise dual tensors (torch.autograd.forward_ad) rather than torch.func.jvp: the same forward-mode AD,
    and an autocast region around the call applies to it as to any forward. BatchNorm's tangent is
    _BatchNormTangent's (fewer operations, the same derivative).
    """
    if tape is not None:
        logits_t = tape.tangent(model, inputs, direction, logits)
        if logits_t is not None:
            return loss_tangent(logits.detach(), targets, logits_t)
    with batch_stats_only(model), torch.no_grad(), fwAD.dual_level(), _LeanBatchNormTangents():
        duals = {k: fwAD.make_dual(p.detach(), direction[k]) for k, p in params.items()}
        return fwAD.unpack_dual(_losses(model, duals, inputs, targets)).tangent


def _recorded_forward(model, inputs):
    """model(inputs), and its Tape for _jvp_losses (None under autocast, whose casts the tape's rules leave to the
    dual-tensor path)."""
    if _autocast_on(inputs.device.type):
        return model(inputs), None
    with Tape() as tape:
        logits = model(inputs)
    return logits, tape


def _autocast_on(device_type):
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no device argument
        return torch.is_autocast_enabled() if device_type == "cuda" else torch.is_autocast_cpu_enabled()


def _real_step(optimizer, loss, reduce=None):
    """Step 3: one step of the real optimiser on the reweighted loss (weights held fixed)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if reduce is not None:  # the gradient of the global loss, and its value
        reduce.sum_grads_(p for group in optimizer.param_groups for p in group["params"])
        loss = reduce.sum(loss.detach())
    optimizer.step()
    return loss.detach()


def mwnet_step(
    model,
    vnet,
    optimizer,
    vnet_optimizer,
    inputs,
    targets,
    meta_inputs,
    meta_targets,
    lr,
    normalize=False,
    meta_grad="jvp",
    detach_vnet_input=True,
    reduce=None,
):
    """One Meta-Weight-Net iteration; model in training mode. Returns detached tensors:
    losses (per sample), weights (from the updated V), loss (the real step's), meta_loss, margins (per sample).
    detach_vnet_input=False: V fed the loss with its gradient in steps 1-2, as the class-imbalance code.
    reduce: a reduce.Reduce when the batch is split over processes (losses and weights are then this
    process's; the loss, the meta loss and every update are the global ones)."""
    if meta_grad not in META_GRADS:
        raise ValueError(f"meta_grad must be one of {META_GRADS}, got {meta_grad!r}")
    if reduce is not None and not detach_vnet_input:
        raise ValueError("detach_vnet_input=False is not split over processes")
    params = dict(model.named_parameters())
    if meta_grad == "jvp":
        logits, tape = _recorded_forward(model, inputs)
        losses = F.cross_entropy(logits, targets, reduction="none")  # also step 3's forward
        if detach_vnet_input:
            weights = sample_weights(vnet, losses)
            virtual_loss = weighted_loss(losses, weights.detach(), normalize, reduce)
        else:
            c = loss_coefficients(vnet, losses, normalize)
            virtual_loss = (losses * c.detach()).sum()  # its w-gradient is J^T c
        grads = torch.autograd.grad(virtual_loss, list(params.values()), retain_graph=True)
        if reduce is not None:
            grads = reduce.sum_all(grads)
        g, meta_loss = _meta_grad_wrt_virtual(model, params, grads, lr, meta_inputs, meta_targets, reduce)
        u = _jvp_losses(model, params, inputs, targets, g, tape, logits)
        del tape
        if detach_vnet_input:
            surrogate = -lr * weighted_loss(u, weights, normalize, reduce)  # its Θ-gradient is dL_meta/dΘ
        else:
            surrogate = -lr * (u * c).sum()
    else:
        with batch_stats_only(model):
            virtual_losses = _losses(model, params, inputs, targets)
        if detach_vnet_input:
            weights = sample_weights(vnet, virtual_losses)
        else:
            weights = vnet(virtual_losses.unsqueeze(1)).squeeze(1)
        grads = torch.autograd.grad(
            weighted_loss(virtual_losses, weights, normalize, reduce), list(params.values()), create_graph=True
        )
        if reduce is not None:  # summed differentiably: the second-order path crosses the processes
            grads = reduce.sum_all(grads, differentiable=True)
        virtual = {k: p - lr * gr for (k, p), gr in zip(params.items(), grads, strict=True)}
        surrogate = _meta_loss(model, virtual, meta_inputs, meta_targets, reduce)
        meta_loss = surrogate.detach() if reduce is None else reduce.sum(surrogate.detach())
    vnet_optimizer.zero_grad(set_to_none=True)
    vnet_grads = torch.autograd.grad(surrogate, list(vnet.parameters()))
    if reduce is not None:
        vnet_grads = reduce.sum_all(vnet_grads)
    for p, grad in zip(vnet.parameters(), vnet_grads, strict=True):
        p.grad = grad
    vnet_optimizer.step()
    # Under autocast, V's low-precision copies of Θ were cached for the region at their first cast in step 1;
    # step 3 must weigh with the updated Θ, so the cache goes (outside autocast it is empty: no cost).
    torch.clear_autocast_cache()
    if meta_grad == "double_backward":
        logits = model(inputs)
        losses = F.cross_entropy(logits, targets, reduction="none")
    with torch.no_grad():
        new_weights = sample_weights(vnet, losses)
    loss = _real_step(optimizer, weighted_loss(losses, new_weights, normalize, reduce), reduce)
    out = {"losses": losses.detach(), "weights": new_weights, "loss": loss, "meta_loss": meta_loss}
    return {**out, "margins": margins(logits, targets)}


def l2rw_weights_from_grad(grad_eps, reduce=None):
    """Ren et al. 2018: w = max(0, -dL_meta/dε), normalised by its sum (zero if the sum is 0), the global one."""
    w = torch.clamp(-grad_eps, min=0)
    norm = w.sum() if reduce is None else reduce.sum(w.sum())
    return w / torch.where(norm != 0, norm, torch.ones_like(norm))


def l2rw_step(model, optimizer, inputs, targets, meta_inputs, meta_targets, lr, meta_grad="jvp", reduce=None):
    """One learning-to-reweight iteration (the paper's strongest reweighting baseline).

    Weights come from the meta-gradient at ε = 0 of L = sum ε_i l_i; since w' = w there,
    dL_meta/dε_i = -lr <g, dl_i/dw> with g = dL_meta/dw at w: one JVP. Same returns as mwnet_step.
    """
    if meta_grad not in META_GRADS:
        raise ValueError(f"meta_grad must be one of {META_GRADS}, got {meta_grad!r}")
    params = dict(model.named_parameters())
    if meta_grad == "jvp":
        logits, tape = _recorded_forward(model, inputs)
        losses = F.cross_entropy(logits, targets, reduction="none")  # also the real step's forward
        # the meta-gradient at ε = 0, where w' is w itself
        g, meta_loss = _meta_grad_wrt_virtual(model, params, None, lr, meta_inputs, meta_targets, reduce)
        grad_eps = -lr * _jvp_losses(model, params, inputs, targets, g, tape, logits)
        del tape
    else:
        with batch_stats_only(model):
            virtual_losses = _losses(model, params, inputs, targets)
        eps = torch.zeros_like(virtual_losses, requires_grad=True)
        grads = torch.autograd.grad((eps * virtual_losses).sum(), list(params.values()), create_graph=True)
        if reduce is not None:
            grads = reduce.sum_all(grads, differentiable=True)
        virtual = {k: p - lr * gr for (k, p), gr in zip(params.items(), grads, strict=True)}
        meta = _meta_loss(model, virtual, meta_inputs, meta_targets, reduce)
        grad_eps = torch.autograd.grad(meta, eps)[0]
        meta_loss = meta.detach() if reduce is None else reduce.sum(meta.detach())
        logits = model(inputs)
        losses = F.cross_entropy(logits, targets, reduction="none")
    weights = l2rw_weights_from_grad(grad_eps.detach(), reduce)
    loss = _real_step(optimizer, (losses * weights).sum(), reduce)  # the weights sum to 1 (or are all 0)
    out = {"losses": losses.detach(), "weights": weights, "loss": loss, "meta_loss": meta_loss}
    return {**out, "margins": margins(logits, targets)}


def erm_step(model, optimizer, inputs, targets, reduce=None, loss=None):
    """Plain training with the same loop: every weight 1, mean loss (cross-entropy, or loss(logits, targets) per
    sample: the class-imbalance baselines' losses, losses.py)."""
    logits = model(inputs)
    losses = F.cross_entropy(logits, targets, reduction="none") if loss is None else loss(logits, targets)
    weights = torch.ones_like(losses)
    mean = losses.mean() if reduce is None else losses.sum() / reduce.count(len(losses), losses.device)
    loss = _real_step(optimizer, mean, reduce)
    out = {"losses": losses.detach(), "weights": weights, "loss": loss, "meta_loss": torch.zeros_like(loss)}
    return {**out, "margins": margins(logits, targets)}
