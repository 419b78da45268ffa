"""One MW-Net iteration on 1 and on 2 processes (gloo, this CPU), in one run, and the bytes the processes
all-reduce per iteration: counted for ResNet-32, and from the same count of parameters for WRN-28-10 and
ResNet-50.

    python benchmarks/bench_distributed.py              # ResNet-32, global batch 100, 3 timed iterations
Each process uses one thread; the single process is timed with one thread and with as many as the two
processes have together.
"""

import argparse
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mwnet.method.meta_step import mwnet_step  # noqa: E402
from mwnet.method.reduce import Reduce  # noqa: E402
from mwnet.models.meta_layers import VNet  # noqa: E402
from mwnet.models.resnet import ResNet32  # noqa: E402

BATCH, WARMUP = 100, 1


class Counted(Reduce):
    """A Reduce that counts the bytes it all-reduces."""

    bytes = 0

    def count(self, n, device):
        Counted.bytes += 4
        return super().count(n, device)

    def sum(self, tensor):
        Counted.bytes += tensor.numel() * tensor.element_size()
        return super().sum(tensor)

    def sum_all(self, tensors, differentiable=False):
        Counted.bytes += sum(t.numel() * t.element_size() for t in tensors)
        return super().sum_all(tensors, differentiable)


def timed(iters, rank=0, size=1, reduce=None):
    """ms per MW-Net (JVP) iteration of ResNet-32 on this process's slice of a global batch of BATCH."""
    torch.manual_seed(0)
    model, vnet = ResNet32(10).to(memory_format=torch.channels_last), VNet()
    opt = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9, weight_decay=5e-4)
    vopt = torch.optim.Adam(vnet.parameters(), 1e-3, weight_decay=1e-4)
    n = BATCH // size
    x = torch.randn(n, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (n,))
    for i in range(WARMUP + iters):
        if i == WARMUP:
            Counted.bytes, start = 0, time.perf_counter()
        mwnet_step(model, vnet, opt, vopt, x, y, x, y, 0.1, reduce=reduce)
    return 1000 * (time.perf_counter() - start) / iters, Counted.bytes / iters


def worker(rank, size, iters, port, out):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=size)
    ms, nbytes = timed(iters, rank, size, Counted())
    if rank == 0:
        out.put((ms, nbytes))
    dist.destroy_process_group()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--port", type=int, default=29533)
    args = p.parse_args(argv)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, ResNet-32, global batch {BATCH}")
    rows = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        rows[f"1 process, {threads} thread{'s' if threads > 1 else ''}"] = timed(args.iters)[0]
    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(worker, args=(2, args.iters, args.port, queue), nprocs=2)
    ms, nbytes = queue.get()
    rows["2 processes (gloo), 1 thread each"] = ms
    base = rows["1 process, 1 thread"]
    for name, value in rows.items():
        print(f"{name:<36} {value:>9.1f} ms/iteration  ({value / base:.2f}x one process on one thread)")
    params = sum(p.numel() for p in ResNet32(10).parameters())
    print(f"all-reduced per MW-Net iteration: {nbytes / 2**20:.2f} MiB for ResNet-32 ({params:,} parameters)")
    per_param = (nbytes - 4 * 301) / params  # the meta-weight-net's 301 gradients apart
    sizes = {"WRN-28-10": 36479194, "ResNet-50 (14 classes)": 23536718}
    for name, n in sizes.items():
        print(f"  so {name}: {per_param * n / 2**20:.0f} MiB ({per_param / 4:.2f} float32 values per parameter)")


if __name__ == "__main__":
    main()
