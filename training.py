"""The one training loop behind MW-Net.py and train_WRN-28-10_Meta_PGC.py.

main(script, argv) parses the script's flags (options.py), builds the noisy split and the
on-device loaders, the model and both optimisers, then runs one loop: each iteration the
learning rate from get_lr, a training batch, a meta batch, and one step of the chosen method
(meta_step.py); at each evaluation one JSON line of metrics and an atomic checkpoint.
"""

import math
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from device_loader import DeviceLoader
from load_corrupted_data import MEAN_STD, NUM_CLASSES, UserError, default_root, load_arrays, make_noisy_split
from meta_layers import VNet
from meta_step import erm_step, l2rw_step, mwnet_step
from options import parse_args
from resnet import ResNet32
from run_files import (
    append_metrics,
    environment,
    load_checkpoint,
    resolve_run_dir,
    save_checkpoint,
    save_split,
    save_weights,
    truncate_metrics,
    write_json,
)
from wideresnet import WideResNet

LOSS_GRID = [i / 10 for i in range(101)]  # losses at which the meta-weight-net's curve is recorded
EVAL_BATCH = {"cuda": 1000, "cpu": 100}  # on the CPU batches of 1000 evaluate slower (benchmarks/bench_eval.py)
DRY_RUN_TEST_IMAGES = 200


@dataclass
class Data:
    train: DeviceLoader
    meta: DeviceLoader | None
    test: DeviceLoader
    meta_idx: np.ndarray
    train_idx: np.ndarray
    clean_labels: np.ndarray
    noisy_labels: np.ndarray
    is_noisy: torch.Tensor
    num_classes: int

    @property
    def noise_rate(self):
        return float(np.mean(self.clean_labels != self.noisy_labels)) if len(self.train_idx) else 0.0


@dataclass
class Plan:
    """How long, at what learning rate, and when to evaluate, in iterations."""

    steps_per_epoch: int
    total: int
    eval_period: int
    unit: str
    lr: float
    milestones: list
    images_per_step: float

    def lr_at(self, step):
        """get_lr: the initial lr times 0.1 per milestone reached, milestones in epochs or iterations.
        A milestone of m epochs is reached at iteration round(m * steps_per_epoch): for an integer m
        that is the original's epoch >= m; a fractional m (a shortened schedule) lands on the nearest one."""
        per = self.steps_per_epoch if self.unit == "epoch" else 1
        return self.lr * 0.1 ** sum(step >= round(m * per) for m in self.milestones)

    def is_eval(self, step):
        done = step + 1
        return done % self.eval_period == 0 or done == self.total

    def epoch(self, step):
        return (step + 1) / self.steps_per_epoch if self.unit == "epoch" else (step + 1) * self.images_per_step


def make_plan(args, batches_per_epoch, n_train):
    spe = 2 if args.dry_run else batches_per_epoch
    if args.unit == "epoch":
        total = round((2 if args.dry_run else args.epochs) * spe)
        period = max(1, round(args.eval_every * spe))
        if total < 1:
            raise UserError(f"--epochs {args.epochs} is less than one iteration of {spe} per epoch; pass more epochs")
    else:
        total = 4 if args.dry_run else args.iters
        period = 2 if args.dry_run else args.eval_every
    return Plan(spe, total, period, args.unit, args.lr, list(args.milestones), args.batch_size / max(n_train, 1))


def pick_device(name):
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda, but no CUDA device is visible; use --device cpu or --device auto")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def build_data(args, device, seeds):
    root = default_root(args.dataset, args.data_path)
    download = args.dataset != "fashionmnist"  # the original downloads CIFAR when it is missing
    images, labels, coarse = load_arrays(args.dataset, root, True, download)
    test_images, test_labels, _ = load_arrays(args.dataset, root, False, download)
    k = NUM_CLASSES[args.dataset]
    meta_idx, train_idx, noisy = make_noisy_split(
        labels, k, args.num_meta, args.corruption_type, args.corruption_prob, args.seed, coarse, args.imb_factor
    )
    if args.method != "erm" and len(meta_idx) == 0:
        raise UserError(f"--method {args.method} needs a clean meta set; pass --num_meta > 0 (a multiple of {k})")
    if args.dry_run:
        test_images, test_labels = test_images[:DRY_RUN_TEST_IMAGES], test_labels[:DRY_RUN_TEST_IMAGES]
    mean, std = MEAN_STD[args.dataset]
    common = dict(device=device, mean=mean, std=std, channels_last=True)
    train = DeviceLoader(
        images[train_idx], noisy, args.batch_size, augment=args.augment, sampling=args.sampling, seed=seeds[1], **common
    )
    meta = None
    if args.method != "erm":
        meta = DeviceLoader(
            images[meta_idx],
            labels[meta_idx],
            args.batch_size,
            augment=args.augment,
            sampling=args.sampling,
            seed=seeds[2],
            **common,
        )
    test = DeviceLoader(test_images, test_labels, EVAL_BATCH.get(device.type, 100), augment=False, **common)
    is_noisy = torch.as_tensor(noisy != labels[train_idx], device=device)
    return Data(train, meta, test, meta_idx, train_idx, labels[train_idx], noisy, is_noisy, k)


def build_model(args, num_classes, device, seed):
    """The classifier, the meta-weight-net (None unless mwnet) and their optimisers."""
    torch.manual_seed(seed)
    if args.arch == "resnet32":
        model = ResNet32(num_classes)
    else:
        model = WideResNet(args.layers, num_classes, widen_factor=args.widen_factor, dropRate=args.droprate)
    cuda = device.type == "cuda"
    # The fast path, the same numbers up to rounding: channels_last convolutions (cuDNN and oneDNN on the
    # CPU both run them faster), fused optimiser steps on CUDA.
    model = model.to(device, memory_format=torch.channels_last)
    fused = {"fused": True} if cuda else {}
    sgd = dict(momentum=args.momentum, nesterov=args.nesterov, **fused)
    optimizer = torch.optim.SGD(model.parameters(), args.lr, weight_decay=args.weight_decay, **sgd)
    vnet = vnet_optimizer = None
    if args.method == "mwnet":
        vnet = VNet(1, 100, 1).to(device)
        if args.vnet_optimizer == "adam":
            vnet_optimizer = torch.optim.Adam(vnet.parameters(), args.vnet_lr, weight_decay=args.vnet_wd, **fused)
        else:
            vnet_optimizer = torch.optim.SGD(vnet.parameters(), args.vnet_lr, weight_decay=args.vnet_wd, **sgd)
    return model, vnet, optimizer, vnet_optimizer


class Tally:
    """Sums since the last evaluation, kept on the device: no host synchronisation per iteration."""

    def __init__(self, device):
        self.device = device
        self.reset()

    def reset(self):
        self.sums = torch.zeros(7, dtype=torch.float64, device=self.device)
        self.steps = 0

    def add(self, out, noisy):
        w = out["weights"].double()
        noisy = noisy.double()
        row = [
            out["loss"].double(),
            out["meta_loss"].double(),
            out["losses"].double().mean(),
            (w * (1 - noisy)).sum(),
            (1 - noisy).sum(),
            (w * noisy).sum(),
            noisy.sum(),
        ]
        self.sums += torch.stack(row)
        self.steps += 1

    def summary(self):
        s = self.sums.tolist()
        n = max(self.steps, 1)
        return {
            "train_loss": s[0] / n,
            "meta_loss": s[1] / n,
            "train_ce": s[2] / n,
            "weight_clean": s[3] / s[4] if s[4] else None,
            "weight_noisy": s[5] / s[6] if s[6] else None,
        }


@torch.no_grad()
def evaluate(model, test):
    """Test loss (the true per-sample mean) and accuracy in %, in eval mode."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=test.device)
    correct = torch.zeros((), dtype=torch.long, device=test.device)
    for x, y, _ in test.in_order():
        logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
        correct += (logits.argmax(1) == y).sum()
    model.train()
    n = len(test.labels)
    return loss_sum.item() / n, 100.0 * correct.item() / n


@torch.no_grad()
def vnet_curve(vnet, device):
    if vnet is None:
        return None
    grid = torch.tensor(LOSS_GRID, device=device).unsqueeze(1)
    return [round(v, 6) for v in vnet(grid).squeeze(1).tolist()]


def one_step(args, model, vnet, optimizer, vnet_optimizer, data, x, y, lr):
    if args.method == "erm":
        return erm_step(model, optimizer, x, y)
    mx, my, _ = data.meta.next_batch()
    if args.method == "l2rw":
        return l2rw_step(model, optimizer, x, y, mx, my, lr, meta_grad=args.meta_grad)
    return mwnet_step(
        model,
        vnet,
        optimizer,
        vnet_optimizer,
        x,
        y,
        mx,
        my,
        lr,
        normalize=args.normalize_weights,
        meta_grad=args.meta_grad,
    )


def checkpoint_state(config, st, model, vnet, optimizer, vnet_optimizer, data):
    return {
        "config": config,
        "device_type": data.test.device.type,
        **st,
        "model": model.state_dict(),
        "vnet": None if vnet is None else vnet.state_dict(),
        "optimizer": optimizer.state_dict(),
        "vnet_optimizer": None if vnet_optimizer is None else vnet_optimizer.state_dict(),
        "train_loader": data.train.state_dict(),
        "meta_loader": None if data.meta is None else data.meta.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def restore(state, model, vnet, optimizer, vnet_optimizer, data):
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if vnet is not None:
        vnet.load_state_dict(state["vnet"])
        vnet_optimizer.load_state_dict(state["vnet_optimizer"])
    data.train.load_state_dict(state["train_loader"])
    if data.meta is not None:
        data.meta.load_state_dict(state["meta_loader"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])


def autocast(args, device):
    """bf16 autocast for the steps and the evaluation under --amp bf16; a no-op otherwise."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp == "bf16")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train(args, plan, run_dir, config, data, model, vnet, optimizer, vnet_optimizer, st):
    """The loop. `st` holds what a checkpoint carries besides the modules: step, best, timers, per-sample tallies."""
    device = data.test.device
    tally = Tally(device)
    last_loss, last_weight = st["last_loss"].to(device), st["last_weight"].to(device)
    bar = tqdm(
        total=plan.total, initial=st["step"], desc=f"{args.method} {args.dataset}", unit="it", dynamic_ncols=True
    )
    mark = time.perf_counter()
    for step in range(st["step"], plan.total):
        lr = plan.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y, idx = data.train.next_batch()
        with autocast(args, device):
            out = one_step(args, model, vnet, optimizer, vnet_optimizer, data, x, y, lr)
        tally.add(out, data.is_noisy[idx])
        last_loss[idx], last_weight[idx] = out["losses"].float(), out["weights"].float()
        bar.update(1)
        if not plan.is_eval(step):
            continue
        sync(device)
        now = time.perf_counter()
        st["train_seconds"] += now - mark
        with autocast(args, device):
            test_loss, test_acc = evaluate(model, data.test)
        st["best_acc"] = max(st["best_acc"], test_acc)
        st["step"], st["last_acc"] = step + 1, test_acc
        st["elapsed"] += time.perf_counter() - mark
        record = {
            "iteration": step + 1,
            "epoch": round(plan.epoch(step), 6),
            "lr": lr,
            **tally.summary(),
            "test_loss": test_loss,
            "test_acc": test_acc,
            "best_acc": st["best_acc"],
        }
        record.update(vnet_curve=vnet_curve(vnet, device), elapsed=round(st["elapsed"], 3))
        append_metrics(run_dir, record)
        st["last_loss"], st["last_weight"] = last_loss.cpu(), last_weight.cpu()
        save_checkpoint(run_dir, checkpoint_state(config, st, model, vnet, optimizer, vnet_optimizer, data))
        tally.reset()
        bar.set_postfix(loss=f"{record['train_loss']:.3f}", acc=f"{test_acc:.2f}", best=f"{st['best_acc']:.2f}")
        mark = time.perf_counter()
    bar.close()


def run(args):
    device = pick_device(args.device)
    if args.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = not args.deterministic
    run_dir, checkpoint = resolve_run_dir(args)
    config = dict(vars(args))
    state = load_checkpoint(checkpoint, config) if checkpoint else None
    seeds = [int(s) for s in np.random.SeedSequence(args.seed).generate_state(3)]  # model, train batches, meta batches
    data = build_data(args, device, seeds)
    plan = make_plan(args, len(data.train), len(data.train_idx))  # refuses a bad length before any file is written
    model, vnet, optimizer, vnet_optimizer = build_model(args, data.num_classes, device, seeds[0])
    os.makedirs(run_dir, exist_ok=True)
    n = len(data.train_idx)
    st = {
        "step": 0,
        "best_acc": 0.0,
        "last_acc": None,
        "elapsed": 0.0,
        "train_seconds": 0.0,
        "last_loss": torch.full((n,), math.nan),
        "last_weight": torch.full((n,), math.nan),
    }
    if state is not None:
        if state["device_type"] != device.type:
            # The batch generators' states belong to their device; so does bit-for-bit continuation.
            raise UserError(
                f"{checkpoint} was made on {state['device_type']}; resume it with --device {state['device_type']}"
            )
        restore(state, model, vnet, optimizer, vnet_optimizer, data)
        st = {k: state[k] for k in st}
        truncate_metrics(run_dir, st["step"])
    else:
        write_json(
            os.path.join(run_dir, "config.json"),
            {
                **config,
                "seeds": seeds,
                "noise_rate": data.noise_rate,
                "vnet_loss_grid": LOSS_GRID,
                "environment": environment(device),
            },
        )
        save_split(run_dir, data)
    train(args, plan, run_dir, config, data, model, vnet, optimizer, vnet_optimizer, st)
    save_weights(run_dir, data, st["last_loss"].numpy(), st["last_weight"].numpy())
    results = {
        "best_test_acc": st["best_acc"],
        "last_test_acc": st["last_acc"],
        "noise_rate": data.noise_rate,
        "iterations": plan.total,
        "iters_per_sec": plan.total / st["train_seconds"] if st["train_seconds"] else None,
        "wall_time": st["elapsed"],
        "device": str(device),
    }
    write_json(os.path.join(run_dir, "results.json"), results)
    return results


def main(script, argv=None):
    """Entry point of both scripts: 0 on success, 2 with one line on a user's mistake."""
    try:
        args = parse_args(script, argv)
        results = run(args)
    except UserError as e:
        sys.stderr.write(f"{script}: error: {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"{script}: interrupted; continue from the last evaluation with --resume <run directory>\n")
        return 130
    print(f"best test accuracy {results['best_test_acc']:.2f}%, last {results['last_test_acc']:.2f}%")
    return 0
