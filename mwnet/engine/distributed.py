"""One run on several processes, started by torchrun (one or several machines): who is who, what they agree on,
and how a batch is shared (README, "Several GPUs").

Without torchrun's environment (WORLD_SIZE unset or 1) a run is one process and nothing here is used. With it,
every process draws the same global batch from the seeded loaders and takes its slice of it; the meta step sums
each batch quantity over the processes (method/reduce.py), so that every process holds the same model,
meta-weight-net and optimiser states; after each step the processes exchange their slices' losses and weights,
so that the tallies, the per-sample records and a checkpoint are those of one process on the whole batch.
BatchNorm normalises each slice by its own statistics, as DistributedDataParallel does by default; its running
statistics are taken from process 0 before each evaluation and checkpoint. Process 0 alone writes the run
directory. NCCL on CUDA, gloo on the CPU; a small gloo group carries the control messages (stopping, errors).
"""

import datetime
import hashlib
import json
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mwnet.errors import UserError
from mwnet.method.reduce import Reduce

# A process that waits longer than this in a collective ends with an error rather than hanging for hours.
TIMEOUT = datetime.timedelta(minutes=10)
# What a collective raises when another process of the run died or stopped answering.
ERRORS = (dist.DistError,) if hasattr(dist, "DistError") else (RuntimeError,)


def lost(error):
    """Whether an error raised in a collective means that another process of the run died or stopped answering
    (gloo reports a peer's death as a plain RuntimeError)."""
    words = ("gloo", "NCCL", "Connection reset", "Connection closed", "Broken pipe", "timed out")
    return isinstance(error, ERRORS) or isinstance(error, RuntimeError) and any(w in str(error) for w in words)


@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    reduce: Reduce | None = None
    control: object = None  # the gloo process group of the control messages

    @property
    def writer(self):
        """Process 0 owns the run directory and speaks; the others write and print nothing."""
        return self.rank == 0

    def part(self, n):
        """This process's slice of a batch of n."""
        return slice(self.rank * n // self.size, (self.rank + 1) * n // self.size)

    def agree(self, value):
        """The largest of the processes' values (an int): e.g. a stop signal that reached any of them."""
        if self.size == 1:
            return value
        t = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.control)
        return int(t.item())

    def gather(self, obj):
        """Every process's `obj`, in rank order (small, picklable)."""
        if self.size == 1:
            return [obj]
        out = [None] * self.size
        dist.all_gather_object(out, obj, group=self.control)
        return out

    def check_same(self, what, value):
        """One line on every process if the processes differ in `what` (flags, code, data)."""
        values = self.gather(value)
        odd = [r for r, v in enumerate(values) if v != values[0]]
        if odd:
            raise UserError(
                f"process {odd[0]} of the run has other {what} than process 0; start every process with the same command, code and data"
            )

    def settle(self, error):
        """After a phase every process must pass (the start): if any failed, all stop, process 0 saying why."""
        errors = self.gather(error)
        first = next(((r, e) for r, e in enumerate(errors) if e), None)
        if first is not None:
            rank, message = first
            raise UserError(message if rank == self.rank else f"process {rank} of the run stopped: {message}")

    def gather_batch(self, out, idx):
        """The whole batch's indices, per-sample losses, weights and margins, from every process's slice, in batch
        order."""
        if self.size == 1:
            return out, idx
        per_sample = ("losses", "weights", "margins")
        whole = self._gather_rows(torch.stack([idx.double(), *(out[k].double() for k in per_sample)]))
        full = {**out, **{k: whole[i + 1].to(out[k].dtype) for i, k in enumerate(per_sample)}}
        return full, whole[0].long()

    def assemble(self, idx, *columns):
        """Columns computed on this process's share of an in-order pass (in_order's part), each a value per
        position in `idx`: the whole pass's, in position order, on every process."""
        if self.size == 1:
            return columns
        whole = self._gather_rows(torch.stack([idx.double(), *(c.double() for c in columns)]))
        order = whole[0].long().argsort()
        return tuple(whole[i + 1][order].to(c.dtype) for i, c in enumerate(columns))

    def _gather_rows(self, rows):
        """Every process's rows (float64, a column per sample; integers exact below 2**53) side by side, in
        rank order."""
        sizes = [int(n) for n in self.gather(rows.shape[1])]
        padded = torch.zeros(len(rows), max(sizes), dtype=torch.float64, device=rows.device)
        padded[:, : rows.shape[1]] = rows
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(parts, padded, group=None if rows.device.type != "cpu" else self.control)
        return torch.cat([p[:, :n] for p, n in zip(parts, sizes, strict=True)], dim=1)

    def sum_(self, tensor):
        """In place, the sum over the processes (evaluation's counts)."""
        if self.size > 1:
            dist.all_reduce(tensor)
        return tensor

    def share_from_first(self, tensor):
        """Process 0's tensor (of the same shape and dtype everywhere), in every process."""
        if self.size > 1:
            dist.broadcast(tensor, src=0)
        return tensor

    def share_buffers(self, model):
        """Process 0's BatchNorm running statistics to every process (as DistributedDataParallel's buffers)."""
        if self.size > 1:
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)

    def close(self, ended=False):
        """ended: this process got to the run's end (finished, stopped by a signal, diverged), as every process
        of the run does together; then they all wait for each other before tearing down: on torch 2.3's gloo, a
        process whose peer had already destroyed the group and exited was seen waiting in destroy_process_group
        for ever. After an error no process waits: another may never come."""
        if self.size > 1 and dist.is_initialized():
            if ended:
                dist.barrier()
            dist.destroy_process_group()


def code_digest():
    """A digest of the package's source files: every process must run the same code."""
    digest = hashlib.sha256()
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for folder, _, files in sorted(os.walk(package)):
        for name in sorted(f for f in files if f.endswith(".py")):
            with open(os.path.join(folder, name), "rb") as f:
                digest.update(name.encode() + f.read())
    return digest.hexdigest()


def start(device_name):
    """The World of this process: one process, or torchrun's, its process group started (NCCL or gloo)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    if cuda and not torch.cuda.is_available():
        raise UserError(
            "--device cuda, but no GPU is visible; drop --device cuda: torchrun's processes then use gloo on the CPU"
        )
    if cuda and local_rank >= torch.cuda.device_count():
        raise UserError(
            f"torchrun started more processes on this machine than the {torch.cuda.device_count()} GPUs visible; pass --nproc_per_node {torch.cuda.device_count()} or fewer"
        )
    if cuda:
        torch.cuda.set_device(local_rank)
    try:
        dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
        control = dist.new_group(backend="gloo", timeout=TIMEOUT) if cuda else None
    except (RuntimeError, ValueError) as e:
        raise UserError(
            f"cannot join the other processes of the run ({str(e).splitlines()[0][:120]}); start it with torchrun"
        ) from None
    return World(rank, size, local_rank, Reduce(), control)


def flags_digest(config, free):
    """The flags that change the numbers, as text: every process must have the same."""
    return json.dumps({k: v for k, v in config.items() if k not in free}, sort_keys=True, default=str)
