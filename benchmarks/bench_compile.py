"""torch.compile (inductor) of the model, against eager, in one run: plain training and MW-Net (jvp) on the laptop
protocol's SmallCNN (or ResNet-32), batch 100, synthetic data as bench_step.py's.

    OMP_NUM_THREADS=1 python benchmarks/bench_compile.py --device cpu

Prints, for each method, the first iteration's seconds (the compile, inductor's cache as it is) and ms per
iteration after the warm-up, eager and compiled, and the ratio compiled / eager. The step's retained graph needs
torch._functorch.config.donated_buffer off under compile; MW-Net's forward-mode pass runs eagerly either way
(replay.py declines a compiled model, whose calls it cannot see; dual tensors break the graph).
"""

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from benchmarks.bench_step import ARCHS, make_step, measure  # noqa: E402
from mwnet.engine.components import keep_freed_memory  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description="Time plain training and MW-Net with the model eager and compiled.")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--arch", default="smallcnn", choices=sorted(ARCHS))
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=50)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch._functorch.config.donated_buffer = False
    keep_freed_memory()
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {args.arch}")
    for method in ("plain", "jvp"):
        ms = {}
        for compiled in (False, True):
            torch._dynamo.reset()
            step = make_step(method, args.arch, 100, device, n_images=1000, compiled=compiled)
            start = time.perf_counter()
            step()
            first = time.perf_counter() - start
            ms[compiled], _ = measure(step, device, "fp32", args.warmup, args.iters)
            label = "compiled" if compiled else "eager"
            print(f"{method:6s} {label:9s} first iteration {first:6.1f} s, then {ms[compiled]:7.1f} ms / iteration")
        print(f"{method:6s} compiled / eager = {ms[True] / ms[False]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
