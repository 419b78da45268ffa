"""The GPU self-check: does this machine run the CUDA fast path correctly? Skipped without CUDA.

    bash scripts/gpu_check.sh      # these tests, then benchmarks/bench_step.py writing runs/gpu-check/bench_step.json

On a CUDA machine: dry runs of both scripts on CUDA in each precision; --precision fp32 really is strict
float32 (a matmul as exact as float32 allows, not TF32's 10-bit mantissa); one MW-Net step (JVP and double
backward) and one L2RW step on CUDA equal the same step on the CPU in float64; a whole iteration (batches,
step, tallies) makes no host synchronisation; CUDA batches equal CPU batches for given crops and flips.
"""

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import FAST, MW, ROOT, SMALL_WRN, WRN, run_main

from mwnet.data.catalog import MEAN_STD
from mwnet.data.device_loader import DeviceLoader
from mwnet.engine.components import set_numerics
from mwnet.engine.loop_state import Tally
from mwnet.method.meta_step import l2rw_step, mwnet_step
from mwnet.models.meta_layers import VNet
from mwnet.models.resnet import ResNet32

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
@pytest.mark.parametrize("script", [MW, WRN])
def test_dry_run_on_cuda(capsys, cifar10_dir, tmp_path, script, precision):
    root, _ = cifar10_dir
    extra = SMALL_WRN if script == WRN else []
    args = ["--dry_run", "--out", str(tmp_path / "run"), "--data_path", root, *FAST, *extra, "--precision", precision]
    result = run_main(capsys, script, *args, "--device", "cuda", cpu=False)
    assert result.returncode == 0, result.stderr
    results = json.load(open(tmp_path / "run" / "results.json"))
    config = json.load(open(tmp_path / "run" / "config.json"))
    assert results["status"] == "finished" and results["device"].startswith("cuda") and config["precision"] == precision
    assert set(config["environment"]["numerics"].values()) <= (
        {"tf32", True} if precision == "tf32" else {"ieee", False}
    )


def test_fp32_is_strict_float32_on_cuda():
    """TF32 rounds the inputs of a matmul to 10 mantissa bits: relative errors near 1e-3 instead of 1e-6."""
    g = torch.Generator().manual_seed(0)
    a, b = (
        torch.randn(512, 512, generator=g, dtype=torch.float64),
        torch.randn(512, 512, generator=g, dtype=torch.float64),
    )
    exact = a @ b
    x = torch.randn(8, 64, 32, 32, generator=g, dtype=torch.float64)
    w = torch.randn(64, 64, 3, 3, generator=g, dtype=torch.float64)
    conv = torch.nn.functional.conv2d(x, w, padding=1)
    errors = {}
    try:
        for precision in ("fp32", "tf32"):
            set_numerics(precision, deterministic=False)
            mm = (a.float().to(CUDA) @ b.float().to(CUDA)).double().cpu()
            cv = torch.nn.functional.conv2d(x.float().to(CUDA), w.float().to(CUDA), padding=1).double().cpu()
            errors[precision] = ((mm - exact).norm() / exact.norm()).item(), ((cv - conv).norm() / conv.norm()).item()
    finally:
        set_numerics("fp32", deterministic=False)
    assert max(errors["fp32"]) < 1e-5, errors
    if torch.cuda.get_device_capability()[0] >= 8:  # Ampere and later have TF32
        assert max(errors["tf32"]) > 1e-4, errors


def stepped(device, method, meta_grad):
    """One step in float64 on `device`, from the same start; the modules afterwards, on the CPU."""
    torch.manual_seed(0)
    model, vnet = ResNet32(10).double(), VNet(1, 100, 1).double()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 3, 32, 32, dtype=torch.double, generator=g), torch.randint(0, 10, (8,), generator=g)
    mx, my = torch.randn(6, 3, 32, 32, dtype=torch.double, generator=g), torch.randint(0, 10, (6,), generator=g)
    model, vnet = model.to(device), vnet.to(device)
    x, y, mx, my = (t.to(device) for t in (x, y, mx, my))
    fused = {"fused": True} if device.type == "cuda" else {}  # as training.py builds them
    opt = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9, weight_decay=5e-4, **fused)
    vopt = torch.optim.Adam(vnet.parameters(), 1e-3, weight_decay=1e-4, **fused)
    if method == "l2rw":
        out = l2rw_step(model, opt, x, y, mx, my, 0.1, meta_grad=meta_grad)
    else:
        out = mwnet_step(model, vnet, opt, vopt, x, y, mx, my, 0.1, meta_grad=meta_grad)
    state = {
        k: v.cpu() for k, v in {**model.state_dict(), **{f"vnet.{k}": v for k, v in vnet.state_dict().items()}}.items()
    }
    return state, out["weights"].cpu()


@pytest.mark.parametrize("method,meta_grad", [("mwnet", "jvp"), ("mwnet", "double_backward"), ("l2rw", "jvp")])
def test_one_step_on_cuda_equals_the_cpu_in_float64(method, meta_grad):
    cpu, cuda = stepped(torch.device("cpu"), method, meta_grad), stepped(CUDA, method, meta_grad)
    torch.testing.assert_close(cuda[1], cpu[1], rtol=1e-9, atol=1e-12)
    for key, value in cpu[0].items():
        torch.testing.assert_close(cuda[0][key], value, rtol=1e-9, atol=1e-11, msg=key)


def test_an_iteration_makes_no_host_synchronisation():
    images = np.random.default_rng(0).integers(0, 256, (300, 32, 32, 3), dtype=np.uint8)
    labels = np.random.default_rng(1).integers(0, 10, 300)
    mean, std = MEAN_STD["cifar10"]
    common = dict(device=CUDA, mean=mean, std=std, channels_last=True)
    loaders = [
        DeviceLoader(images, labels, 32, sampling=s, seed=i, **common) for i, s in enumerate(("epoch", "random"))
    ]
    model, vnet = ResNet32(10).to(CUDA, memory_format=torch.channels_last), VNet(1, 100, 1).to(CUDA)
    opt = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9, fused=True)
    vopt = torch.optim.Adam(vnet.parameters(), 1e-3, fused=True)
    tally, noisy = Tally(CUDA), torch.zeros(300, dtype=torch.bool, device=CUDA)
    last = torch.full((300,), float("nan"), device=CUDA)

    def iteration(meta_grad, method="mwnet"):
        x, y, idx = loaders[0].next_batch()
        mx, my, _ = loaders[1].next_batch()
        if method == "l2rw":
            out = l2rw_step(model, opt, x, y, mx, my, 0.1)
        else:
            out = mwnet_step(model, vnet, opt, vopt, x, y, mx, my, 0.1, meta_grad=meta_grad)
        tally.add(out, noisy[idx])
        last[idx] = out["weights"].float()

    iteration("jvp")  # warm-up: lazy initialisation may synchronise
    torch.cuda.set_sync_debug_mode("error")
    try:
        for meta_grad in ("jvp", "double_backward", "jvp"):
            iteration(meta_grad)
        iteration("jvp", "l2rw")
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_cuda_batches_equal_cpu_batches_for_given_crops_and_flips():
    """The design: the random draws are the device generator's own, but a batch for given images, crop
    offsets and flips is the same gather on either device."""
    images = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    mean, std = MEAN_STD["cifar10"]
    idx, offsets = torch.arange(0, 40, 3), torch.randint(0, 9, (14, 2), generator=torch.Generator().manual_seed(0))
    flips = torch.rand(14, generator=torch.Generator().manual_seed(1)) < 0.5
    batches = []
    for device in ("cpu", CUDA):
        loader = DeviceLoader(images, np.zeros(40), 10, device=device, mean=mean, std=std, channels_last=True)
        batches.append(loader.make_batch(idx.to(device), offsets.to(device), flips.to(device)).cpu())
        test = DeviceLoader(images, np.zeros(40), 10, device=device, mean=mean, std=std, augment=False)
        batches.append(torch.cat([x.cpu() for x, _, _ in test.in_order()]))
    assert torch.equal(batches[0], batches[2]) and torch.equal(batches[1], batches[3])


def test_the_step_benchmark_runs_on_cuda(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "benchmarks/bench_step.py", "--smoke", "--device", "cuda", "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.load(open(out))["rows"]
    assert {r["precision"] for r in rows} == {"fp32", "tf32", "bf16"} and all(r["ms"] > 0 for r in rows)


def test_copy_of_model_is_untouched_by_the_step():
    """Steps 1-2 leave the real model alone on CUDA too: a second copy stepped only by step 3's optimiser agrees."""
    torch.manual_seed(0)
    model = ResNet32(10).to(CUDA)
    before = copy.deepcopy(model.state_dict())
    vnet = VNet(1, 100, 1).to(CUDA)
    opt, vopt = torch.optim.SGD(model.parameters(), 0.0), torch.optim.Adam(vnet.parameters(), 1e-3)
    x, y = torch.randn(8, 3, 32, 32, device=CUDA), torch.randint(0, 10, (8,), device=CUDA)
    mwnet_step(model, vnet, opt, vopt, x, y, x, y, 0.1)  # lr 0 for the real step: only BatchNorm's statistics move
    after = model.state_dict()
    for key, value in before.items():
        if "running" not in key and "num_batches" not in key:
            assert torch.equal(after[key], value), key
    assert after["bn1.num_batches_tracked"].item() == 1
