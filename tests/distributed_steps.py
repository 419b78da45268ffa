"""Run by tests/test_distributed.py under torchrun (2 gloo processes): 5 iterations of each method's step, each
process on its slice of the same global batches, the states saved for the test to compare with one process."""

import datetime
import os
import sys

import torch
import torch.distributed as dist
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mwnet.method.meta_step import erm_step, l2rw_step, mwnet_step  # noqa: E402
from mwnet.method.reduce import Reduce  # noqa: E402
from mwnet.models.meta_layers import VNet  # noqa: E402

CASES = [
    ("mwnet", "jvp", False),
    ("mwnet", "jvp", True),
    ("mwnet", "double_backward", False),
    ("mwnet", "double_backward", True),
    ("l2rw", "jvp", False),
    ("l2rw", "double_backward", False),
    ("erm", "jvp", False),
]
N, M, ITERATIONS, LR = 10, 7, 5, 0.1  # global batch 10 (5 + 5), meta batch 7 (3 + 4): uneven slices too


def model(batch_norm=False):
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 4, 3, padding=1)] + ([nn.BatchNorm2d(4)] if batch_norm else []) + [nn.Tanh()]
    layers += [nn.Conv2d(4, 4, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 3)]
    return nn.Sequential(*layers).double(), VNet().double()


def batches():
    g = torch.Generator().manual_seed(1)
    for _ in range(ITERATIONS):
        x, y = torch.randn(N, 3, 6, 6, dtype=torch.double, generator=g), torch.randint(0, 3, (N,), generator=g)
        mx, my = torch.randn(M, 3, 6, 6, dtype=torch.double, generator=g), torch.randint(0, 3, (M,), generator=g)
        yield x, y, mx, my


def run(case, batch_norm=False, rank=0, size=1, reduce=None):
    """The states after ITERATIONS steps of `case` on this process's slices; one process when size is 1."""
    method, meta_grad, normalize = case
    net, vnet = model(batch_norm)
    opt = torch.optim.SGD(net.parameters(), LR, momentum=0.9, weight_decay=5e-4)
    vopt = torch.optim.Adam(vnet.parameters(), 1e-2, weight_decay=1e-4)
    for x, y, mx, my in batches():
        part, meta_part = (
            slice(rank * N // size, (rank + 1) * N // size),
            slice(rank * M // size, (rank + 1) * M // size),
        )
        x, y, mx, my = x[part], y[part], mx[meta_part], my[meta_part]
        if method == "erm":
            erm_step(net, opt, x, y, reduce=reduce)
        elif method == "l2rw":
            l2rw_step(net, opt, x, y, mx, my, LR, meta_grad=meta_grad, reduce=reduce)
        else:
            mwnet_step(net, vnet, opt, vopt, x, y, mx, my, LR, normalize, meta_grad, reduce=reduce)
    return {"model": net.state_dict(), "vnet": vnet.state_dict(), "opt": opt.state_dict(), "vopt": vopt.state_dict()}


def main(out):
    dist.init_process_group("gloo", timeout=datetime.timedelta(minutes=2))  # a hang ends as an error, not at 600 s
    rank, size = dist.get_rank(), dist.get_world_size()
    states = {case: run(case, False, rank, size, Reduce()) for case in CASES}
    states["batch_norm"] = run(("mwnet", "jvp", True), True, rank, size, Reduce())
    torch.save(states, os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
