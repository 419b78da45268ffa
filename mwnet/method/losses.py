"""The class-imbalance baselines' losses, per sample: focal, class-balanced and logit-adjusted.

Each is plain training with another per-sample loss (meta_step.erm_step takes it), built once per run from the
training set's class counts (its labels as the learner sees them):
  focal (Cui et al., CVPR 2019, after Lin et al.): the sigmoid focal loss, summed over the classes,
     sum_k (1 - p_k)^gamma * BCE_k with p_k = sigmoid(z_k) for the label's class and 1 - sigmoid(z_k) for the others;
  class-balanced (Cui et al.): cross-entropy weighted by alpha_y, alpha_c = (1 - beta) / (1 - beta^n_c), the
     inverse effective number of class c's n_c samples, scaled so that the K classes' alphas sum to K;
  logit-adjusted (Menon et al., ICLR 2021): cross-entropy of z + tau * log(pi), pi the training labels' class
     frequencies; predictions stay argmax z.
"""

import math

import torch
import torch.nn.functional as F


def focal_loss(logits, targets, gamma):
    """Cui et al.'s focal loss of each sample (sigmoid, summed over the classes)."""
    sign = 2 * F.one_hot(targets, logits.shape[1]).to(logits.dtype) - 1  # +1 at the label, -1 elsewhere
    z = sign * logits  # p_k = sigmoid(z) is the probability of being right about class k
    bce = F.softplus(-z)  # -log sigmoid(z)
    modulator = torch.exp(-gamma * F.softplus(z)) if gamma else 1.0  # (1 - sigmoid(z))^gamma
    return (modulator * bce).sum(1)


def class_balanced_weights(counts, beta):
    """alpha_c = (1 - beta) / (1 - beta^n_c), scaled to sum to the number of classes; a class without training
    samples gets weight 0 (no sample of it is ever weighted)."""
    counts = torch.as_tensor(counts, dtype=torch.float64)
    effective = -torch.expm1(counts * math.log(beta)) / (1 - beta) if beta > 0 else torch.ones_like(counts)
    alpha = torch.where(counts > 0, 1 / effective.clamp(min=1e-300), torch.zeros_like(counts))
    return alpha * len(counts) / alpha.sum()


def class_balanced_loss(logits, targets, alpha):
    return alpha[targets] * F.cross_entropy(logits, targets, reduction="none")


def logit_adjusted_loss(logits, targets, shift):
    """Cross-entropy of the logits shifted by tau * log(prior) (shift, one value a class)."""
    return F.cross_entropy(logits + shift, targets, reduction="none")


def log_prior_shift(counts, tau):
    counts = torch.as_tensor(counts, dtype=torch.float64)
    prior = counts / counts.sum()
    return tau * torch.log(prior.clamp(min=1e-12))  # an empty class: a large negative shift, never its label


def make(kind, args, counts, device, dtype=torch.float32):
    """The per-sample loss of method `kind` for a training set of these class counts: a function of (logits,
    targets)."""
    if kind == "focal":
        gamma = args.focal_gamma
        return lambda logits, targets: focal_loss(logits, targets, gamma)
    if kind == "cb":
        alpha = class_balanced_weights(counts, args.cb_beta).to(device, dtype)
        return lambda logits, targets: class_balanced_loss(logits, targets, alpha.to(logits.dtype))
    if kind == "la":
        shift = log_prior_shift(counts, args.la_tau).to(device, dtype)
        return lambda logits, targets: logit_adjusted_loss(logits, targets, shift.to(logits.dtype))
    raise KeyError(kind)
