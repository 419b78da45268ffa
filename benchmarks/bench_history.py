"""What keeping each sample's history costs a run (samples.csv's mean_loss, mean_margin, early_loss, early_margin):
the laptop protocol's MW-Net iteration (SmallCNN, batch 100, 5,000 training images) with and without it.

    OMP_NUM_THREADS=1 python benchmarks/bench_history.py --device cpu

Times, in one process, interleaved: the recording of a batch as the loop does it (Progress.record: last loss and
weight, the last epoch's draws) without the history, the same with it (margins computed from the step's logits,
then the two windows' sums), and a whole MW-Net step of SmallCNN; prints each per iteration and the history's
share of an iteration.
"""

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mwnet.engine.loop_state import Progress  # noqa: E402
from mwnet.method.meta_step import margins, mwnet_step  # noqa: E402
from mwnet.models.meta_layers import VNet  # noqa: E402
from mwnet.models.small import SmallCNN  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats):
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - start) / repeats


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median is printed")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    n, batch = 5000, 100
    g = torch.Generator().manual_seed(0)
    model, vnet = SmallCNN(10).to(device), VNet(1, 100, 1).to(device)
    optimizer = torch.optim.SGD(model.parameters(), 0.02, momentum=0.9, weight_decay=5e-4)
    vnet_optimizer = torch.optim.Adam(vnet.parameters(), 1e-3, weight_decay=1e-4)
    x, mx = torch.randn(batch, 3, 32, 32, generator=g).to(device), torch.randn(batch, 3, 32, 32, generator=g).to(device)
    y, my = (
        torch.randint(0, 10, (batch,), generator=g).to(device),
        torch.randint(0, 10, (batch,), generator=g).to(device),
    )
    logits = torch.randn(batch, 10, generator=g).to(device)
    idx = torch.randperm(n, generator=g)[:batch].to(device)
    losses, weights = torch.rand(batch, generator=g).to(device), torch.rand(batch, generator=g).to(device)
    plain, kept = Progress.new(n, device, 50, batch), Progress.new(n, device, 50, batch)
    plain.history = None
    step = lambda: mwnet_step(model, vnet, optimizer, vnet_optimizer, x, y, mx, my, 0.02)  # noqa: E731
    without = lambda: plain.record(7, idx, losses, weights)  # noqa: E731
    with_history = lambda: kept.record(7, idx, losses, weights, margins(logits, y), early=True)  # noqa: E731
    for fn in (step, without, with_history):  # warm-up
        timed(fn, device, 3)
    rows = {"MW-Net step": [], "record, no history": [], "record, with history": []}
    for _ in range(args.rounds):
        rows["MW-Net step"].append(timed(step, device, 20))
        rows["record, no history"].append(timed(without, device, 2000))
        rows["record, with history"].append(timed(with_history, device, 2000))
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(
        f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} thread(s); median of {args.rounds} rounds"
    )
    for k, v in med.items():
        print(f"  {k:<22} {1000 * v:8.3f} ms an iteration")
    extra = med["record, with history"] - med["record, no history"]
    print(f"  the history's cost: {1000 * extra:.3f} ms, {100 * extra / med['MW-Net step']:.2f} % of an MW-Net step")


if __name__ == "__main__":
    main()
