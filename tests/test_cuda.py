"""The GPU self-check: does this machine run the CUDA fast path correctly? Skipped without CUDA.

    bash scripts/gpu_check.sh      # these tests, then benchmarks/bench_step.py writing runs/gpu-check/bench_step.json

On a CUDA machine: dry runs of both scripts on CUDA in each precision; --precision fp32 really is strict
float32 (a matmul as exact as float32 allows, not TF32's 10-bit mantissa); one MW-Net step (JVP and double
backward) and one L2RW step on CUDA equal the same step on the CPU in float64; a whole iteration (batches,
step, tallies) makes no host synchronisation; CUDA batches equal CPU batches for given crops and flips.
"""

import copy
import json
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import FAST, MW, ROOT, SHORT, SMALL_WRN, WRN, metrics, run_main, stop_at

from mwnet.data.catalog import MEAN_STD
from mwnet.data.device_loader import DeviceLoader
from mwnet.engine.components import autocast, set_numerics
from mwnet.engine.loop_state import Tally
from mwnet.method.meta_step import l2rw_step, mwnet_step
from mwnet.models.meta_layers import VNet
from mwnet.models.resnet import ResNet32
from mwnet.models.wideresnet import WideResNet

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


def stepped(
    device,
    method="mwnet",
    meta_grad="jvp",
    dtype=torch.double,
    channels_last=False,
    detach=True,
    precision="fp32",
    arch="resnet32",
):
    """One step from the same start (model, vnet, batches drawn on the CPU) on `device`; the modules afterwards,
    the vnet's gradient and the weights, on the CPU in float64."""
    torch.manual_seed(0)
    model = ResNet32(10) if arch == "resnet32" else WideResNet(28, 10, widen_factor=10)
    vnet = VNet(1, 100, 1)
    n = 8 if arch == "resnet32" else 32
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(n, 3, 32, 32, dtype=torch.double, generator=g), torch.randint(0, 10, (n,), generator=g)
    mx, my = torch.randn(6, 3, 32, 32, dtype=torch.double, generator=g), torch.randint(0, 10, (6,), generator=g)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model, vnet = model.to(device, dtype, memory_format=layout), vnet.to(device, dtype)
    x, mx = (t.to(device, dtype).contiguous(memory_format=layout) for t in (x, mx))
    y, my = y.to(device), my.to(device)
    fused = {"fused": True} if device.type == "cuda" else {}  # as training.py builds them
    opt = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9, weight_decay=5e-4, **fused)
    vopt = torch.optim.Adam(vnet.parameters(), 1e-3, weight_decay=1e-4, **fused)
    set_numerics(precision, deterministic=False)
    try:
        with autocast(precision, device):
            if method == "l2rw":
                out = l2rw_step(model, opt, x, y, mx, my, 0.1, meta_grad=meta_grad)
            else:
                out = mwnet_step(
                    model, vnet, opt, vopt, x, y, mx, my, 0.1, meta_grad=meta_grad, detach_vnet_input=detach
                )
    finally:
        set_numerics("fp32", deterministic=False)
    state = {**model.state_dict(), **{f"vnet.{k}": v for k, v in vnet.state_dict().items()}}
    grad = None if method == "l2rw" else torch.cat([p.grad.flatten() for p in vnet.parameters()]).double().cpu()
    return {k: v.cpu() for k, v in state.items()}, out["weights"].double().cpu(), grad


def relative(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize(
    "method,meta_grad,detach",
    [
        ("mwnet", "jvp", True),
        ("mwnet", "double_backward", True),
        ("mwnet", "jvp", False),
        ("mwnet", "double_backward", False),
        ("l2rw", "jvp", True),
    ],
)
def test_one_step_on_cuda_equals_the_cpu_in_float64(method, meta_grad, detach):
    cpu = stepped(torch.device("cpu"), method, meta_grad, detach=detach)
    cuda = stepped(CUDA, method, meta_grad, detach=detach)
    torch.testing.assert_close(cuda[1], cpu[1], rtol=1e-9, atol=1e-12)
    for key, value in cpu[0].items():
        torch.testing.assert_close(cuda[0][key], value, rtol=1e-9, atol=1e-11, msg=key)


def flat(state):
    return torch.cat([v.double().flatten() for v in state.values() if v.is_floating_point()])


@pytest.mark.parametrize("channels_last", [False, True])
def test_float32_steps_on_cuda_agree_with_float64_on_the_cpu(channels_last):
    """cuDNN's kernels, channels_last (with its persistent BatchNorm in training) among them, in strict float32
    against the float64 step on the CPU. Float32 rounds at 2^-24, but sums over a batch's positions in the
    weight gradients and the meta-gradient's difference of large terms amplify it: the same comparison on the
    CPU's channels_last float32 gave 4e-3 (meta-gradient), 4e-5 (parameters) and 1e-7 (weights); bounds 5x."""
    reference = stepped(torch.device("cpu"))
    ours = stepped(CUDA, dtype=torch.float32, channels_last=channels_last)
    assert relative(ours[2], reference[2]) < 2e-2
    assert relative(flat(ours[0]), flat(reference[0])) < 2e-4
    assert (ours[1] - reference[1]).abs().max().item() < 1e-6


@pytest.mark.parametrize("precision,bounds", [("tf32", (5e-2, 1e-3, 2e-3)), ("bf16", (4e-1, 1e-2, 1e-2))])
@pytest.mark.parametrize("meta_grad", ["jvp", "double_backward"])
def test_tf32_and_bf16_steps_stay_close_to_fp32(precision, bounds, meta_grad):
    """The faster precisions move the step by their rounding only. bf16 keeps 8 significant bits (2^-8 = 4e-3 a
    rounding): on the CPU, this step's meta-gradient moved by 0.125 relative, the parameters by 3.3e-3 and the
    weights by 2.8e-3; the bounds are 3x that. TF32 keeps 11 bits, 8 times finer: bounds 8x tighter or more."""
    strict = stepped(CUDA, meta_grad=meta_grad, dtype=torch.float32, channels_last=True)
    fast = stepped(CUDA, meta_grad=meta_grad, dtype=torch.float32, channels_last=True, precision=precision)
    grad_bound, param_bound, weight_bound = bounds
    assert relative(fast[2], strict[2]) < grad_bound
    assert relative(flat(fast[0]), flat(strict[0])) < param_bound
    assert (fast[1] - strict[1]).abs().max().item() < weight_bound


def test_a_wrn_28_10_step_on_cuda():
    """The paper's WRN-28-10 (36.5 M parameters) at batch 32: the JVP and the double backward agree in strict
    float32 (3e-7 relative on the CPU: they share most of the computation; bound 1e-3), and a bf16 step is finite."""
    jvp = stepped(CUDA, dtype=torch.float32, channels_last=True, arch="wrn")
    double = stepped(CUDA, meta_grad="double_backward", dtype=torch.float32, channels_last=True, arch="wrn")
    assert relative(jvp[2], double[2]) < 1e-3 and (jvp[1] - double[1]).abs().max().item() < 1e-5
    bf16 = stepped(CUDA, dtype=torch.float32, channels_last=True, arch="wrn", precision="bf16")
    assert all(torch.isfinite(v).all() for v in bf16[0].values() if v.is_floating_point())


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
        tally.add(out, noisy[idx], ~noisy[idx])
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


@pytest.fixture(scope="module")
def cuda_runs(cifar10_dir, tmp_path_factory):
    """--deterministic runs of 14 iterations on CUDA: two uninterrupted, one stopped by SIGUSR1 at 6 and resumed."""
    from mwnet.engine import launch

    root, _ = cifar10_dir
    base = tmp_path_factory.mktemp("cuda-runs")
    flags = ["--data_path", root, *SHORT, "--device", "cuda", "--deterministic"]
    quiet = lambda *argv: launch.main(MW, list(argv))  # noqa: E731
    assert quiet("--out", str(base / "a"), *flags) == 0
    assert quiet("--out", str(base / "b"), *flags) == 0
    with pytest.MonkeyPatch.context() as mp:
        stop_at(mp, 6)
        assert quiet("--out", str(base / "c"), *flags) == 128 + signal.SIGUSR1
    assert quiet("--resume", str(base / "c")) == 0
    return base


def test_deterministic_runs_repeat_and_a_resume_on_cuda_continues_bit_for_bit(cuda_runs):
    a, b, c = (metrics(cuda_runs / name) for name in ("a", "b", "c"))
    assert a == b == c and len(a) == 4
    weights = [np.load(cuda_runs / name / "weights.npz")["weight"] for name in ("a", "b", "c")]
    np.testing.assert_array_equal(weights[0], weights[1])
    np.testing.assert_array_equal(weights[0], weights[2])


def test_evaluate_on_cuda_gives_the_runs_accuracy(capsys, cuda_runs):
    results = json.load(open(cuda_runs / "a" / "results.json"))
    out = run_main(capsys, MW, "--evaluate", str(cuda_runs / "a"), "--device", "cuda", cpu=False)
    assert out.returncode == 0 and f"test accuracy {results['last_test_acc']:.2f}%" in out.stdout, out.stderr
