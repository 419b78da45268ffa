"""What Clothing1M costs here, in one run: reading its lists, the streaming pipeline's throughput for 1, 2, ...
workers, and one iteration of each method with ResNet-50 at 224 x 224 (batch 32, the preset's) on this device.

    python benchmarks/bench_clothing1m.py                        # everything (minutes on a CPU)
    python benchmarks/bench_clothing1m.py --lines 100000 --steps 0   # lists and pipeline only
Synthetic stand-ins: list files of --lines lines (the real noisy training list has 1,037,497) with as many empty
image files, and JPEGs of 400 x 300 (Clothing1M's are of that order) for the pipeline. Prints seconds, images/s,
ms per iteration and the ratios to plain training.
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.bench_step import measure  # noqa: E402
from mwnet.data.catalog import MEAN_STD  # noqa: E402
from mwnet.data.clothing1m import check_images, read_labels, read_list  # noqa: E402
from mwnet.data.stream_loader import ImageFiles, StreamLoader  # noqa: E402
from mwnet.method.meta_step import erm_step, l2rw_step, mwnet_step  # noqa: E402
from mwnet.models.imagenet import resnet50  # noqa: E402
from mwnet.models.meta_layers import VNet  # noqa: E402


def lists(folder, n):
    """Seconds to read a label file and a key list of n lines, and to check that their n images exist."""
    paths = [f"images/{i % 1000}/{i}.jpg" for i in range(n)]
    for d in range(1000):
        os.makedirs(os.path.join(folder, "images", str(d)), exist_ok=True)
    for p in paths:
        open(os.path.join(folder, p), "w").close()
    with open(os.path.join(folder, "kv.txt"), "w") as f:
        f.writelines(f"{p} {i % 14}\n" for i, p in enumerate(paths))
    with open(os.path.join(folder, "keys.txt"), "w") as f:
        f.writelines(p + "\n" for p in paths)
    start = time.perf_counter()
    labels = read_labels(os.path.join(folder, "kv.txt"))
    listed, _ = read_list(os.path.join(folder, "keys.txt"), labels, "kv.txt")
    parsed = time.perf_counter()
    check_images(folder, listed, "keys.txt")
    return parsed - start, time.perf_counter() - parsed


def pipeline(folder, workers, images=256, batches=8):
    """Training batches of 32 per second, as images per second, with `workers` loader processes."""
    from PIL import Image

    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(folder, "jpg"), exist_ok=True)
    paths = []
    for i in range(images):
        smooth = np.kron(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), np.ones((10, 10, 1), dtype=np.uint8))
        path = f"jpg/{i}.jpg"
        if not os.path.exists(os.path.join(folder, path)):
            Image.fromarray(smooth).save(os.path.join(folder, path), quality=90)
        paths.append(path)
    files = ImageFiles(folder, paths, np.zeros(images, dtype=np.int64))
    rates = {}
    for w in workers:
        loader = StreamLoader(files, 32, "cpu", *MEAN_STD["clothing1m"], workers=w)
        loader.next_batch()  # the workers start
        start = time.perf_counter()
        for _ in range(batches):
            loader.next_batch()
        rates[w] = 32 * batches / (time.perf_counter() - start)
    return rates


def steps(device, warmup, iters):
    """ms per iteration of plain training, MW-Net (JVP) and L2RW, ResNet-50 at 224, batch 32."""
    torch.manual_seed(0)
    x = torch.randn(32, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 14, (32,), device=device)
    out = {}
    for method in ("plain", "jvp", "l2rw"):
        model = resnet50(14).to(device, memory_format=torch.channels_last)
        vnet = VNet().to(device)
        opt = torch.optim.SGD(model.parameters(), 0.01, momentum=0.9, weight_decay=1e-3)
        vopt = torch.optim.Adam(vnet.parameters(), 1e-3, weight_decay=1e-4)

        def step(method=method, model=model, vnet=vnet, opt=opt, vopt=vopt):
            if method == "plain":
                return erm_step(model, opt, x, y)
            if method == "l2rw":
                return l2rw_step(model, opt, x, y, x, y, 0.01)
            return mwnet_step(model, vnet, opt, vopt, x, y, x, y, 0.01)

        out[method] = measure(step, device, "fp32", warmup, iters)[0]
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lines", type=int, default=1037497, help="lines of the synthetic lists (default: the real one's)")
    p.add_argument("--workers", default=None, help="comma-separated worker counts (default: 1, 2, ..., the CPU count)")
    p.add_argument("--steps", type=int, default=2, help="timed iterations of each method (0: none)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = p.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",")] if args.workers else list(range(1, (os.cpu_count() or 1) + 1))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as folder:
        parse, check = lists(folder, args.lines)
        print(f"lists of {args.lines} lines: read in {parse:.2f} s, their images checked in {check:.2f} s")
        rates = pipeline(folder, workers)
    for w, rate in rates.items():
        print(f"pipeline, {w} workers: {rate:.0f} images/s ({rate / rates[workers[0]]:.2f}x {workers[0]} worker)")
    if args.steps:
        ms = steps(torch.device(args.device), warmup=1, iters=args.steps)
        for method, t in ms.items():
            print(f"ResNet-50 at 224, batch 32, {method}: {t:.0f} ms/iteration ({t / ms['plain']:.2f}x plain)")


if __name__ == "__main__":
    main()
