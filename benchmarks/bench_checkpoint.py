"""What checkpoints cost a run: the WRN preset's 20,000 iterations, evaluated every 100, with a checkpoint at
every evaluation (the old cadence, 200 writes) and with the cadence of training.checkpoint_due (every
--checkpoint_every minutes, before each lr milestone, at the end); each write timed here for real.

    python benchmarks/bench_checkpoint.py                              # WRN-16-4, 30 ms an iteration assumed
    python benchmarks/bench_checkpoint.py --layers 28 --widen 10       # WRN-28-10 itself (278 MiB a write)

The iteration time sets how many minutes the run lasts, so how many writes the clock asks for: 30 ms is
20,000 iterations in 10 minutes, the GPU target. Prints the size and seconds of one write, then the writes,
seconds and GiB of each cadence and their ratio, from one run.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mwnet.engine.components import build_learner  # noqa: E402
from mwnet.engine.options import parse_args  # noqa: E402
from mwnet.engine.training import checkpoint_due, make_plan  # noqa: E402
from mwnet.method.meta_step import mwnet_step  # noqa: E402
from mwnet.runs.run_files import CHECKPOINT, RunDir  # noqa: E402


def writes(plan, iter_seconds, every_minutes):
    """The iterations at which a run of `plan` writes a checkpoint, on a clock of iter_seconds an iteration."""
    out, last = [], 0
    for done in range(plan.eval_period, plan.total + 1, plan.eval_period):
        if checkpoint_due(plan, done, (done - last) * iter_seconds, every_minutes):
            out.append(done)
            last = done
    if out[-1] != plan.total:  # the end always writes one (the loop's last evaluation is at the end)
        out.append(plan.total)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--widen", type=int, default=4)
    p.add_argument("--iter_ms", type=float, default=30.0, help="ms an iteration, for the clock (default 30)")
    p.add_argument("--every", type=float, default=5.0, help="--checkpoint_every, minutes (default 5)")
    p.add_argument("--repeats", type=int, default=5, help="writes timed (the median is kept)")
    args = p.parse_args(argv)
    run_args = parse_args(
        "train_WRN-28-10_Meta_PGC.py", ["--layers", str(args.layers), "--widen-factor", str(args.widen)]
    )
    plan = make_plan(run_args, batches_per_epoch=490, n_train=49000)
    learner = build_learner(run_args, 10, torch.device("cpu"), 0)
    x, y = torch.randn(8, 3, 32, 32).contiguous(memory_format=torch.channels_last), torch.randint(0, 10, (8,))
    m = learner
    mwnet_step(m.model, m.vnet, m.optimizer, m.vnet_optimizer, x, y, x, y, 0.1)  # momentum buffers exist
    state = {"model": m.model.state_dict(), "optimizer": m.optimizer.state_dict()}
    state.update(vnet=m.vnet.state_dict(), vnet_optimizer=m.vnet_optimizer.state_dict())
    with tempfile.TemporaryDirectory() as folder:
        run_dir = RunDir(folder)
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run_dir.save_checkpoint(state)  # the run's own atomic write
            seconds.append(time.perf_counter() - start)
        size = os.path.getsize(run_dir.file(CHECKPOINT)) / 2**20
    per_write = statistics.median(seconds)
    print(f"WRN-{args.layers}-{args.widen}: a checkpoint of {size:.1f} MiB takes {per_write:.3f} s to write here")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {plan.total} iterations at {args.iter_ms:g} ms"
    )
    old = list(range(plan.eval_period, plan.total + 1, plan.eval_period))
    new = writes(plan, args.iter_ms / 1000, args.every)
    for name, its in (("every evaluation", old), (f"every {args.every:g} min + milestones + end", new)):
        print(f"{name:<36} {len(its):>4} writes  {len(its) * per_write:>8.1f} s  {len(its) * size / 1024:>7.2f} GiB")
    print(f"ratio {len(old) / len(new):.0f}x fewer writes; the new cadence writes at iterations {new}")


if __name__ == "__main__":
    main()
