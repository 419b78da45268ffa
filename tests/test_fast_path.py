"""The fast path keeps the numbers: the benchmark's original way, bf16 autocast, channels_last."""

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import CPU_ENV, ROOT, assert_one_line_error, run_cli
from torch.utils._python_dispatch import TorchDispatchMode

from benchmarks.bench_step import original_way
from mwnet.data.catalog import MEAN_STD
from mwnet.data.device_loader import DeviceLoader
from mwnet.method.meta_step import mwnet_step
from mwnet.models.meta_layers import VNet
from mwnet.models.resnet import ResNet32
from mwnet.models.wideresnet import WideResNet


def test_original_way_equals_mwnet_step():
    """The benchmark's (d) is the original's iteration: same vnet and model after one step (float64)."""
    torch.manual_seed(0)
    model, vnet = ResNet32(10).double(), VNet().double()
    x, y = torch.randn(6, 3, 16, 16, dtype=torch.double), torch.randint(0, 10, (6,))
    mx, my = torch.randn(4, 3, 16, 16, dtype=torch.double), torch.randint(0, 10, (4,))
    states = []
    for way in ("original", "ours"):
        m, v = copy.deepcopy(model), copy.deepcopy(vnet)
        opt = torch.optim.SGD(m.parameters(), 0.1, momentum=0.9, weight_decay=5e-4)
        vopt = torch.optim.Adam(v.parameters(), 1e-3, weight_decay=1e-4)
        if way == "original":
            original_way(
                lambda: ResNet32(10).double(),
                m,
                v,
                opt,
                vopt,
                iter([(x, y)]),
                iter([(mx, my)]),
                0.1,
                torch.device("cpu"),
            )
        else:
            mwnet_step(m, v, opt, vopt, x, y, mx, my, 0.1, meta_grad="jvp")
        states.append((m.state_dict(), v.state_dict(), torch.cat([p.grad.flatten() for p in v.parameters()])))
    (m1, v1, g1), (m2, v2, g2) = states
    assert ((g1 - g2).norm() / g2.norm()).item() < 1e-9
    for key in m1:
        torch.testing.assert_close(m1[key], m2[key], rtol=0, atol=1e-12, msg=key)
    for key in v1:
        torch.testing.assert_close(v1[key], v2[key], rtol=0, atol=1e-12, msg=key)


def test_bf16_autocast_jvp_close_to_double_backward():
    torch.manual_seed(1)
    model, vnet = ResNet32(10), VNet()
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    grads = {}
    for way in ("jvp", "double_backward"):
        m, v = copy.deepcopy(model), copy.deepcopy(vnet)
        opt, vopt = torch.optim.SGD(m.parameters(), 0.1), torch.optim.Adam(v.parameters(), 1e-3)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = mwnet_step(m, v, opt, vopt, x, y, x, y, 0.1, meta_grad=way)
        grads[way] = torch.cat([p.grad.flatten() for p in v.parameters()])
        assert out["losses"].dtype == torch.float32 and torch.isfinite(out["loss"])
    a, b = grads["jvp"], grads["double_backward"]
    assert b.norm() > 0 and ((a - b).norm() / b.norm()).item() < 0.05  # bf16 rounding, not a different gradient


def test_channels_last_batches_hold_the_same_values():
    images = np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    mean, std = MEAN_STD["cifar10"]
    plain = DeviceLoader(images, np.zeros(12), 6, "cpu", mean, std, seed=3)
    fast = DeviceLoader(images, np.zeros(12), 6, "cpu", mean, std, seed=3, channels_last=True)
    a, b = plain.next_batch()[0], fast.next_batch()[0]
    assert b.is_contiguous(memory_format=torch.channels_last) and torch.equal(a, b)


def test_benchmark_smoke_run(tmp_path):
    out = tmp_path / "bench.json"
    proc = run_cli(
        "benchmarks/bench_step.py",
        "--smoke",
        "--device",
        "cpu",
        "--archs",
        "smallcnn",  # the smallest model: every method's path in the benchmark is the same for every model
        "--precisions",
        "fp32",
        "--json",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.load(open(out))["rows"]
    methods = ["plain", "jvp", "double", "orig", "l2rw"]
    assert [(r["arch"], r["method"]) for r in rows] == [("smallcnn", m) for m in methods]
    assert all(r["ms"] > 0 for r in rows)
    ops = {r["method"]: r["ops"] for r in rows}  # MW-Net's iteration does more than plain training's, L2RW's between
    assert 0 < ops["plain"] < ops["l2rw"] < ops["jvp"] < ops["double"]
    assert "b/a =" in proc.stdout and "d/b =" in proc.stdout and "L2RW/plain =" in proc.stdout


def test_cpu_fast_evaluation_equals_plain_evaluation():
    # channels_last and batches of 100 (the CPU's fast path) change neither the test loss nor the accuracy.
    from mwnet.data.split import EVAL_BATCH
    from mwnet.engine.training import evaluate

    torch.manual_seed(0)
    model = ResNet32(10)
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (300, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 300)
    mean, std = MEAN_STD["cifar10"]
    plain = evaluate(model, DeviceLoader(images, labels, 300, "cpu", mean, std, augment=False))
    model = model.to(memory_format=torch.channels_last)
    fast = DeviceLoader(images, labels, EVAL_BATCH["cpu"], "cpu", mean, std, augment=False, channels_last=True)
    loss, acc = evaluate(model, fast)
    assert EVAL_BATCH["cpu"] == 100 and loss == pytest.approx(plain[0], rel=1e-5) and acc == plain[1]


def test_eval_benchmark_smoke_run():
    proc = run_cli("benchmarks/bench_eval.py", "--smoke", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [int(r[0]) for r in rows] == [100, 200] and all(float(r[1]) > 0 for r in rows) and "(used)" in proc.stdout


@pytest.mark.parametrize("detach", [True, False])
@pytest.mark.parametrize("way", ["jvp", "double_backward"])
def test_step_3_weighs_with_the_updated_vnet_under_bf16_autocast(way, detach):
    """Autocast caches its bf16 copy of each parameter for the region: without clearing it after the meta-net's
    step, step 3 (and the weights a run records) would use V before its update."""
    torch.manual_seed(0)
    model, vnet = ResNet32(10), VNet()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 3, 16, 16, generator=g), torch.randint(0, 10, (8,), generator=g)
    opt = torch.optim.SGD(model.parameters(), 0.1)
    vopt = torch.optim.SGD(vnet.parameters(), 10.0)  # a large step, so that V before and after differ clearly
    before = copy.deepcopy(vnet)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # one region around the iteration, as the loop has
        out = mwnet_step(model, vnet, opt, vopt, x, y, x, y, 0.1, meta_grad=way, detach_vnet_input=detach)
    losses = out["losses"].unsqueeze(1)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # a fresh region: fresh casts
        new, old = vnet(losses).squeeze(1), before(losses).squeeze(1)
    assert (new - old).abs().max() > 1e-2
    torch.testing.assert_close(out["weights"], new, rtol=0, atol=0)


@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
def test_both_tf32_apis_answer_after_set_numerics(precision):
    """torch.compile, cudnn.flags() and users' code read the legacy flags; since torch 2.9 a mix of the legacy
    and the new API makes those getters raise. After set_numerics both answer, and agree."""
    from mwnet.engine.components import numerics, set_numerics
    from mwnet.engine.options import PRECISIONS

    try:
        set_numerics(precision, deterministic=False)
        tf32 = PRECISIONS[precision][0]
        assert torch._C._get_cublas_allow_tf32() is tf32 and torch._C._get_cudnn_allow_tf32() is tf32
        assert numerics() == {"matmul_allow_tf32": tf32, "cudnn_allow_tf32": tf32}
        if hasattr(torch.backends, "fp32_precision"):  # the new API (torch >= 2.9)
            assert (torch.backends.cuda.matmul.fp32_precision == "tf32") is tf32
            assert (torch.backends.cudnn.conv.fp32_precision == "tf32") is tf32
    finally:
        set_numerics("fp32", deterministic=False)


class Ops(TorchDispatchMode):
    """The names of the aten operations run inside it."""

    def __init__(self):
        super().__init__()
        self.seen = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.seen.add(func.__name__)
        return func(*args, **(kwargs or {}))


def skip_without_fake_cuda():
    from torch._subclasses.fake_tensor import FakeTensorMode

    try:
        with FakeTensorMode():
            torch.empty(1, device="cuda")
    except (RuntimeError, AssertionError):  # older torch initialises CUDA even for a fake tensor
        pytest.skip(f"torch {torch.__version__} makes fake CUDA tensors only where a GPU driver is")


@pytest.mark.parametrize("precision", ["fp32", "tf32"])
@pytest.mark.parametrize("arch", ["resnet32", "wrn"])
def test_the_jvp_forward_traces_on_fake_cuda_tensors(arch, precision):
    """CUDA adds its own BatchNorm kernels and convolutions in channels_last: the meta step's forward-mode pass
    reaches them on fake CUDA tensors (no GPU needed) and every one has a forward-AD formula, or this raises."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from mwnet.engine.components import set_numerics
    from mwnet.method.meta_step import _jvp_losses

    skip_without_fake_cuda()
    model = (ResNet32(10) if arch == "resnet32" else WideResNet(10, 10, widen_factor=2)).to(
        memory_format=torch.channels_last
    )
    try:
        set_numerics(precision, deterministic=False)
        with FakeTensorMode():
            params = {k: torch.empty_strided(p.shape, p.stride(), device="cuda") for k, p in model.named_parameters()}
            x = torch.randn(4, 3, 32, 32, device="cuda").contiguous(memory_format=torch.channels_last)
            y = torch.randint(0, 10, (4,), device="cuda")
            direction = {k: torch.randn_like(p) for k, p in params.items()}
            with Ops() as ops:
                u = _jvp_losses(model, params, x, y, direction)
            assert u.shape == (4,) and u.device.type == "cuda"
    finally:
        set_numerics("fp32", deterministic=False)
    # float32 BatchNorm in the forward-mode pass is the step's own tangent's (meta_step._BatchNormTangent), whose
    # primal is native_batch_norm on every device, cuDNN's BatchNorm left out
    assert "native_batch_norm.default" in ops.seen and "cudnn_batch_norm.default" not in ops.seen
    assert "convolution.default" in ops.seen


@pytest.mark.parametrize("arch", ["resnet32", "wrn"])
def test_the_replayed_forward_mode_pass_traces_on_fake_cuda_tensors(arch):
    """On CUDA the recorded forward's BatchNorm is cuDNN's, whose saved statistics the replay does not read: it
    recomputes them (var_mean) and follows the recorded forward to its end on fake CUDA tensors in channels_last."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from mwnet.method.meta_step import _jvp_losses, _recorded_forward

    skip_without_fake_cuda()
    model = ResNet32(10) if arch == "resnet32" else WideResNet(10, 10, widen_factor=2)
    with FakeTensorMode(allow_non_fake_inputs=True):
        model = model.to("cuda", memory_format=torch.channels_last)
        x = torch.randn(4, 3, 32, 32, device="cuda").contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (4,), device="cuda")
        with Ops() as first:
            logits, tape = _recorded_forward(model, x)
        params = dict(model.named_parameters())
        direction = {k: torch.randn_like(p) for k, p in params.items()}
        with Ops() as second:
            assert tape.tangent(model, x, direction, logits) is not None
            u = _jvp_losses(model, params, x, y, direction, tape, logits)
        assert u.shape == (4,) and u.device.type == "cuda"
    assert "cudnn_batch_norm.default" in first.seen
    assert "var_mean.correction" in second.seen and "cudnn_batch_norm.default" not in second.seen


def test_parameters_grads_and_optimiser_buffers_keep_their_layout_through_a_checkpoint(tmp_path):
    """The fused CUDA optimisers need each parameter, gradient and state buffer of one size, stride and dtype:
    true after steps in channels_last, and after a checkpoint is saved and loaded into fresh modules."""
    from mwnet.engine.components import build_learner
    from mwnet.engine.options import parse_args

    args = parse_args("MW-Net.py", [])

    def stepped(learner):
        x, y = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last), torch.randint(0, 10, (4,))
        m = learner
        mwnet_step(m.model, m.vnet, m.optimizer, m.vnet_optimizer, x, y, x, y, 0.1)

    def layouts(learner):
        out = []
        for module, opt in ((learner.model, learner.optimizer), (learner.vnet, learner.vnet_optimizer)):
            for p in module.parameters():
                tensors = [p, p.grad, *[t for t in opt.state[p].values() if torch.is_tensor(t) and t.dim()]]
                out.append([(t.shape, t.stride(), t.dtype) for t in tensors])
        return out

    first = build_learner(args, 10, torch.device("cpu"), 0)
    stepped(first)
    for row in layouts(first):
        assert len(row) >= 3 and all(r == row[0] for r in row), row  # parameter, gradient, buffers alike
    assert any(p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last) for p in first.model.parameters())
    state = {"model": first.model.state_dict(), "optimizer": first.optimizer.state_dict()}
    state.update(vnet=first.vnet.state_dict(), vnet_optimizer=first.vnet_optimizer.state_dict())
    torch.save(state, tmp_path / "c.pt")
    loaded = torch.load(tmp_path / "c.pt", weights_only=True)
    second = build_learner(args, 10, torch.device("cpu"), 1)
    second.model.load_state_dict(loaded["model"])
    second.optimizer.load_state_dict(loaded["optimizer"])
    second.vnet.load_state_dict(loaded["vnet"])
    second.vnet_optimizer.load_state_dict(loaded["vnet_optimizer"])
    stepped(second)
    assert layouts(second) == layouts(first)


def test_the_gpu_self_check_needs_a_gpu_and_says_so():
    env = {**CPU_ENV, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert_one_line_error(proc, "gpu_check: no CUDA device is visible", "needs a GPU")


def test_the_operation_count_sees_work_not_views_and_one_per_multi_tensor_operation():
    from benchmarks.bench_step import OperationCount

    x, ys = torch.ones(4, 3), [torch.ones(2) for _ in range(50)]
    with OperationCount() as counter:
        z = (x + 1).view(12)  # one add; the view launches nothing
        torch._foreach_add_(ys, 1.0)  # one operation for the 50 tensors
        z.detach()
    assert dict(counter.counts) == {"add": 1, "_foreach_add_": 1}


PAGE_FAULTS = """
import resource, sys, torch
from mwnet.engine.components import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
def rounds(n):
    for _ in range(n):
        ts = [torch.ones(12 << 20) for _ in range(2)]  # two 48 MiB tensors alive at once, every page written
        del ts
rounds(20)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds(10)
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(
    sys.platform != "linux" or __import__("platform").libc_ver()[0] != "glibc", reason="glibc's mallopt"
)
def test_freed_memory_is_reused_without_the_system_zeroing_it_again():
    """glibc's defaults give freed blocks back to the system (those above 32 MiB always: its own threshold stops
    there; smaller ones depending on what came before), and every page of the next one is a page fault (two
    tensors of 48 MiB, 10 times: about 245,000); kept, the heap grows during the first rounds (on torch 2.3 for
    up to seven of them, where its allocator places the blocks), then serves them all: 10 rounds after 20."""
    counts = {}
    for how in ("default", "keep"):
        out = subprocess.run(
            [sys.executable, "-c", PAGE_FAULTS, how], cwd=ROOT, env=CPU_ENV, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        kept, faults = out.stdout.split()
        counts[how] = int(faults)
        assert kept == {"default": "None", "keep": "True"}[how]
    tensor = (48 << 20) // 4096  # pages
    assert counts["default"] > 0.9 * 10 * 2 * tensor and counts["keep"] < 1.1 * tensor, counts
