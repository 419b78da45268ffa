"""Time one test-set evaluation (training.evaluate) of ResNet-32 or the SmallCNN at several batch sizes.

    python benchmarks/bench_eval.py                 # 10,000 synthetic test images, batches 100, 200, 1000
    python benchmarks/bench_eval.py --arch smallcnn # the laptop protocol's classifier
    python benchmarks/bench_eval.py --smoke         # 400 images, for CI

Prints seconds per evaluation and the ratio to the batch the scripts use on this device
(EVAL_BATCH in mwnet/data/split.py), all from one run.
"""

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from mwnet.data.device_loader import DeviceLoader  # noqa: E402
from mwnet.data.split import EVAL_BATCH  # noqa: E402
from mwnet.engine.components import keep_freed_memory, pick_device  # noqa: E402
from mwnet.engine.training import evaluate  # noqa: E402
from mwnet.models.resnet import ResNet32  # noqa: E402
from mwnet.models.small import SmallCNN  # noqa: E402

ARCHS = {"resnet32": ResNet32, "smallcnn": SmallCNN}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    p.add_argument("--arch", default="resnet32", choices=tuple(ARCHS))
    p.add_argument("--images", type=int, default=10000)
    p.add_argument("--batches", default="100,200,1000", help="comma-separated batch sizes")
    p.add_argument("--repeats", type=int, default=2, help="timed evaluations per batch size (the best is kept)")
    p.add_argument("--smoke", action="store_true", help="400 images, batches 100 and 200, one repeat")
    args = p.parse_args(argv)
    if args.smoke:
        args.images, args.batches, args.repeats = 400, "100,200", 1
    device = pick_device(args.device)
    kept = keep_freed_memory()  # as the training scripts run
    used = EVAL_BATCH.get(device.type, 100)
    batches = sorted({int(b) for b in args.batches.split(",")} | {used})
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, args.images)
    torch.manual_seed(0)
    model = ARCHS[args.arch](10).to(device, memory_format=torch.channels_last)
    seconds = {}
    for batch in batches:
        test = DeviceLoader(images, labels, batch, device, (0.5,) * 3, (0.25,) * 3, augment=False, channels_last=True)
        evaluate(model, test)  # warm-up
        times = []
        for _ in range(args.repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            evaluate(model, test)  # reads its results back, so the time is complete
            times.append(time.perf_counter() - start)
        seconds[batch] = min(times)
    print(
        f"device {device.type}, torch {torch.__version__}, {torch.get_num_threads()} threads, {args.arch}, "
        f"{args.images} images, freed memory kept: {kept}"
    )
    print(f"{'batch':>6} {'seconds':>9} {'ratio':>7}")
    for batch in batches:
        mark = "  (used)" if batch == used else ""
        print(f"{batch:>6} {seconds[batch]:>9.2f} {seconds[batch] / seconds[used]:>7.2f}{mark}")


if __name__ == "__main__":
    main()
