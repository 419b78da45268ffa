"""Cost of one training iteration, in one run: plain training, MW-Net (jvp), MW-Net (double
backward), MW-Net the original's way and L2RW; ResNet-32, WRN-28-10 and the laptop protocol's SmallCNN; in the
scripts' precisions (strict float32, TF32, bf16 autocast).

    python benchmarks/bench_step.py                      # the full benchmark (meant for a GPU)
    python benchmarks/bench_step.py --smoke --device cpu # small sizes, seconds: what CI runs
    OMP_NUM_THREADS=1 python benchmarks/bench_step.py --device cpu --archs smallcnn --precisions fp32 \
        --methods plain,jvp,double,l2rw                  # the laptop protocol on one core

(a) plain:  erm_step on on-device batches
(b) jvp:    mwnet_step(meta_grad="jvp") on on-device batches (the default path)
(c) double: mwnet_step(meta_grad="double_backward") on on-device batches
(d) orig:   the original's loop: a PIL + DataLoader input pipeline, a fresh model and
            load_state_dict every iteration, the legacy MetaModule update_params, a create_graph
            gradient, and .backward() into every leaf
(l2rw):     l2rw_step (jvp) on on-device batches
Prints ms per iteration, images per second, peak memory and the operations an iteration dispatches that do work
on a device (OperationCount: a GPU's kernel launches, counted on any machine) of each, the ratios b/a and d/b,
and the projected length of the two papers' protocols and of the laptop protocol's training steps from (b).
"""

import argparse
import collections
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mwnet.data.catalog import MEAN_STD  # noqa: E402
from mwnet.data.device_loader import DeviceLoader  # noqa: E402
from mwnet.engine.components import autocast, keep_freed_memory, optimizer_options, set_numerics  # noqa: E402
from mwnet.method.meta_step import erm_step, l2rw_step, mwnet_step  # noqa: E402
from mwnet.models.meta_layers import VNet  # noqa: E402
from mwnet.models.resnet import ResNet32  # noqa: E402
from mwnet.models.small import SmallCNN  # noqa: E402
from mwnet.models.wideresnet import WideResNet  # noqa: E402

MEAN, STD = MEAN_STD["cifar10"]
ARCHS = {
    "resnet32": lambda: ResNet32(10),
    "wrn-28-10": lambda: WideResNet(28, 10, widen_factor=10),
    "wrn-10-1": lambda: WideResNet(10, 10, widen_factor=1),  # --smoke's stand-in for WRN-28-10
    "smallcnn": lambda: SmallCNN(10),  # --protocol laptop's
}
LAPTOP_ITERS = 2000  # --protocol laptop: 40 epochs of 50 batches of 100


class PILDataset(torch.utils.data.Dataset):
    """The original's input pipeline: PIL images through torchvision transforms, one by one."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels
        self.transform = T.Compose(
            [
                T.ToTensor(),
                T.Lambda(lambda x: F.pad(x.unsqueeze(0), (4, 4, 4, 4), mode="reflect").squeeze(0)),
                T.ToPILImage(),
                T.RandomCrop(32),
                T.RandomHorizontalFlip(),
                T.ToTensor(),
                T.Normalize(MEAN, STD),
            ]
        )

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def endless(loader):
    while True:
        yield from loader


def original_way(make_model, model, vnet, optimizer, vnet_optimizer, batches, meta_batches, lr, device):
    """One iteration as MW-Net.py of the original runs it."""
    x, y = (t.to(device, non_blocking=True) for t in next(batches))
    meta_model = make_model().to(device)
    meta_model.load_state_dict(model.state_dict())
    cost = F.cross_entropy(meta_model(x), y, reduction="none").view(-1, 1)
    v = vnet(cost.detach())
    grads = torch.autograd.grad((cost * v).sum() / len(cost), list(meta_model.params()), create_graph=True)
    meta_model.update_params(lr_inner=lr, source_params=grads)
    mx, my = (t.to(device, non_blocking=True) for t in next(meta_batches))
    meta_loss = F.cross_entropy(meta_model(mx), my)
    vnet_optimizer.zero_grad()
    meta_loss.backward()  # into every leaf: the copy's parameters as well as the vnet's
    vnet_optimizer.step()
    cost = F.cross_entropy(model(x), y, reduction="none").view(-1, 1)
    with torch.no_grad():
        w = vnet(cost)
    optimizer.zero_grad()
    ((cost * w).sum() / len(cost)).backward()
    optimizer.step()


def make_step(method, arch, batch, device, n_images, compiled=False):
    """A closure running one iteration of `method`, with its own model, optimisers and data (compiled: the model
    through torch.compile, bench_compile.py's)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n_images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n_images)
    cuda = device.type == "cuda"
    model = ARCHS[arch]().to(device, memory_format=torch.channels_last)  # as training.py; orig undoes it
    if compiled:
        model.compile(dynamic=False)
    vnet = VNet().to(device)
    fused = optimizer_options(device) if method != "orig" else {}  # as the training scripts build them
    optimizer = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9, weight_decay=5e-4, **fused)
    vnet_optimizer = torch.optim.Adam(vnet.parameters(), 1e-3, weight_decay=1e-4, **fused)
    if method == "orig":
        model = model.to(memory_format=torch.contiguous_format)
        loader = torch.utils.data.DataLoader(
            PILDataset(images, labels), batch_size=batch, shuffle=True, pin_memory=cuda
        )
        meta = torch.utils.data.DataLoader(
            PILDataset(images[:1000], labels[:1000]), batch_size=batch, shuffle=True, pin_memory=cuda
        )
        batches, meta_batches = endless(loader), endless(meta)
        return lambda: original_way(
            ARCHS[arch], model, vnet, optimizer, vnet_optimizer, batches, meta_batches, 0.1, device
        )
    common = dict(device=device, mean=MEAN, std=STD, sampling="epoch", channels_last=True)
    train = DeviceLoader(images, labels, batch, seed=1, **common)
    meta_loader = DeviceLoader(images[:1000], labels[:1000], batch, seed=2, **common)

    def step():
        x, y, _ = train.next_batch()
        if method == "plain":
            return erm_step(model, optimizer, x, y)
        mx, my, _ = meta_loader.next_batch()
        if method == "l2rw":
            return l2rw_step(model, optimizer, x, y, mx, my, 0.1)
        grad = "jvp" if method == "jvp" else "double_backward"
        return mwnet_step(model, vnet, optimizer, vnet_optimizer, x, y, mx, my, 0.1, meta_grad=grad)

    return step


def measure(step, device, precision, warmup, iters):
    """ms per iteration and peak memory (MiB, CUDA only) of `iters` timed iterations, in the numerics of
    the scripts' --precision (fp32: strict float32; tf32; bf16 autocast)."""
    set_numerics(precision, deterministic=False)
    for _ in range(warmup):
        with autocast(precision, device):  # a region per iteration, as the loop enters one
            step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(iters):
        with autocast(precision, device):
            step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    ms = 1000 * (time.perf_counter() - start) / iters
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return ms, peak


# Operations that launch no work on a device: metadata, allocation without filling, the profiler's markers.
NO_WORK = {"is_same_size", "_has_same_storage_numel", "_record_function_enter_new", "_record_function_exit"}
NO_WORK |= {"empty", "empty_like", "empty_strided", "_efficientzerotensor", "detach", "alias", "lift_fresh"}
NO_WORK |= {"_unsafe_view"}


class OperationCount(TorchDispatchMode):
    """The operations one iteration dispatches that do work on a device (a GPU's kernel launches, one each, or a
    few for a multi-tensor operation), by name: every aten operation but views and NO_WORK. The same count on
    any machine, so that a change's effect on a GPU's launches is known without one."""

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if not func.is_view and name not in NO_WORK:
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))


def count_operations(step, device, precision):
    """The operations of one iteration (after `measure`'s warm-up), in the numerics of --precision; None where
    the counting itself fails: under bf16 autocast, the forward-mode pass of ResNet-32 (not of the SmallCNN) meets
    a convolution with a float32 input and a bfloat16 weight inside the counting mode only (the same iteration
    runs without it; torch 2.14.1, CPU)."""
    set_numerics(precision, deterministic=False)
    try:
        with OperationCount() as counter, autocast(precision, device):
            step()
    except RuntimeError as e:
        if "should be the same" not in str(e):
            raise
        return None
    return sum(counter.counts.values())


def report(rows, batch):
    print(f"{'arch':<10} {'prec':<5} {'method':<7} {'ms/iter':>9} {'img/s':>8} {'peak MiB':>9} {'ops/iter':>9}")
    for r in rows:
        peak = f"{r['peak_mib']:.0f}" if r["peak_mib"] is not None else "-"
        ms, speed = ("-", "-") if r["ms"] is None else (f"{r['ms']:.1f}", f"{r['images_per_sec']:.0f}")
        ops = "-" if r["ops"] is None else r["ops"]
        print(f"{r['arch']:<10} {r['precision']:<5} {r['method']:<7} {ms:>9} {speed:>8} {peak:>9} {ops:>9}")
    if any(r["ops"] is None for r in rows):
        print("ops/iter '-': the counting mode failed under autocast there (count_operations says where)")
    print()
    if any(r["ms"] is None for r in rows):
        return
    by = {(r["arch"], r["precision"], r["method"]): r["ms"] for r in rows}
    for arch, precision in sorted({(r["arch"], r["precision"]) for r in rows}):
        ms = {m: by.get((arch, precision, m)) for m in ("plain", "jvp", "double", "orig", "l2rw")}
        if not (ms["plain"] and ms["jvp"]):
            continue  # the ratios need both plain training and the jvp path
        line = f"{arch} {precision}: MW-Net(jvp)/plain b/a = {ms['jvp'] / ms['plain']:.2f}"
        if ms["double"]:
            line += f", double/jvp c/b = {ms['double'] / ms['jvp']:.2f}"
        if ms["orig"]:
            line += f", original/jvp d/b = {ms['orig'] / ms['jvp']:.2f}"
        if ms["l2rw"]:
            line += f", L2RW/plain = {ms['l2rw'] / ms['plain']:.2f}"
        if arch == "smallcnn" and batch == 100:
            line += f"; the laptop protocol's {LAPTOP_ITERS} iterations = {LAPTOP_ITERS * ms['jvp'] / 60000:.1f} min (MW-Net), {LAPTOP_ITERS * ms['plain'] / 60000:.1f} min (plain)"
            if ms["l2rw"]:
                line += f", {LAPTOP_ITERS * ms['l2rw'] / 60000:.1f} min (L2RW), evaluations not counted"
        if arch == "wrn-28-10" and batch == 100:
            line += f"; 20,000 iterations = {20000 * ms['jvp'] / 60000:.1f} min"
        if arch == "resnet32" and batch == 100:
            line += f"; an epoch of 490 iterations = {490 * ms['jvp'] / 1000:.1f} s"
        print(line)
    print(
        f"(batch {batch}; the targets on one H100 are b/a <= 3.7 for WRN-28-10, d/b >= 3, 20,000 WRN iterations <= 10 min, a ResNet-32 epoch <= 5 s)"
    )


def main(argv=None):
    p = argparse.ArgumentParser(description="Time one training iteration of each method.")
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    p.add_argument(
        "--archs", default=None, help="comma-separated, from: " + ", ".join(ARCHS) + " (default: resnet32,wrn-28-10)"
    )
    p.add_argument(
        "--precisions",
        default="fp32,tf32,bf16",
        help="comma-separated: fp32, tf32, bf16 as --precision (default: all three)",
    )
    p.add_argument("--methods", default="plain,jvp,double,orig,l2rw", help="comma-separated (default: all five)")
    p.add_argument("--batch", type=int, default=100, help="training and meta batch size (default: 100)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument(
        "--smoke", action="store_true", help="small sizes for a CPU: batch 8, WRN-10-1, 1 warm-up, 2 timed iterations"
    )
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    p.add_argument(
        "--count_only", action="store_true", help="only the operations an iteration dispatches, no timing (seconds)"
    )
    args = p.parse_args(argv)
    if args.smoke:
        args.batch, args.warmup, args.iters = 8, 1, 2
        args.archs = args.archs or "resnet32,wrn-10-1"
    device = torch.device(
        "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    kept = keep_freed_memory()  # as the training scripts run
    print(f"device {name}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, freed memory kept: {kept}")
    rows = []
    for arch in (args.archs or "resnet32,wrn-28-10").split(","):
        for precision in args.precisions.split(","):
            for method in args.methods.split(","):
                step = make_step(method, arch, args.batch, device, n_images=max(4 * args.batch, 1000))
                ms, peak = (
                    (None, None) if args.count_only else measure(step, device, precision, args.warmup, args.iters)
                )
                if args.count_only:
                    with autocast(precision, device):
                        step()  # the state of a run under way: optimisers' buffers made, generators started
                ops = count_operations(step, device, precision)
                rows.append(
                    dict(
                        arch=arch,
                        precision=precision,
                        method=method,
                        ms=ms,
                        images_per_sec=None if ms is None else 1000 * args.batch / ms,
                        peak_mib=peak,
                        ops=ops,
                        device=name,
                    )
                )
                del step
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    report(rows, args.batch)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "device": name, "batch": args.batch, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
