"""Sums over the processes of one run (torchrun), for the meta step: each process holds a slice of the global
batch, and every quantity the paper defines over the batch is summed over all of them.

A step given a Reduce computes its part of each batch quantity, normalised by the global batch (its size, or
the global sum of the weights), so that the sum over processes is the single-process value:
  - the virtual step's gradient, the meta-gradient g, the meta-weight-net's gradient and the real step's
    gradient are summed (one all-reduce of the flattened tensors each), so that w', Θ and w are the same in
    every process;
  - the global sum of the weights (--normalize_weights, L2RW) is an all-reduce that autograd differentiates
    (_Sum: the gradient of a sum over processes is the sum over processes of the gradients), so that the
    meta-gradient through the normalisation, and the double backward's second-order path, are the global ones.
Without a Reduce (one process) the step runs exactly as before.
"""

import torch
import torch.distributed as dist


class _Sum(torch.autograd.Function):
    """dist.all_reduce (SUM) that autograd differentiates, to any order: its backward is itself."""

    @staticmethod
    def forward(ctx, tensor, group):
        ctx.group = group
        total = tensor.clone()
        dist.all_reduce(total, group=group)
        return total

    @staticmethod
    def backward(ctx, grad):
        return _Sum.apply(grad.contiguous(), ctx.group), None


def all_reduce(tensor, group=None):
    return _Sum.apply(tensor, group)


class Reduce:
    def __init__(self, group=None):
        self.group = group

    def count(self, n, device):
        """The global number of samples of which this process holds n."""
        total = torch.tensor(float(n), device=device)
        dist.all_reduce(total, group=self.group)
        return total

    def sum(self, tensor):
        """The sum over the processes, differentiable (its backward sums the gradients over them too)."""
        return all_reduce(tensor, group=self.group)

    def sum_all(self, tensors, differentiable=False):
        """The sums over the processes of several tensors, through one flat all-reduce."""
        flat = torch.cat([t.reshape(-1) for t in tensors])
        if differentiable:
            flat = all_reduce(flat, group=self.group)
        else:
            flat = flat.detach().clone()
            dist.all_reduce(flat, group=self.group)
        return [part.view_as(t) for part, t in zip(flat.split([t.numel() for t in tensors]), tensors, strict=True)]

    def sum_grads_(self, parameters):
        """Sum the .grad of the parameters over the processes, in place (before an optimiser's step)."""
        params = [p for p in parameters if p.grad is not None]
        for p, total in zip(params, self.sum_all([p.grad for p in params]), strict=True):
            p.grad.copy_(total)
