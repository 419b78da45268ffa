"""The fast path keeps the numbers: the benchmark's original way, bf16 autocast, channels_last."""

import copy
import json

import numpy as np
import pytest
import torch
from conftest import run_cli

from benchmarks.bench_step import original_way
from mwnet.data.catalog import MEAN_STD
from mwnet.data.device_loader import DeviceLoader
from mwnet.method.meta_step import mwnet_step
from mwnet.models.meta_layers import VNet
from mwnet.models.resnet import ResNet32


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
        "resnet32",
        "--precisions",
        "fp32",
        "--json",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.load(open(out))["rows"]
    assert [r["method"] for r in rows] == ["plain", "jvp", "double", "orig"] and all(r["ms"] > 0 for r in rows)
    assert "b/a =" in proc.stdout and "d/b =" in proc.stdout


def test_cpu_fast_evaluation_equals_plain_evaluation():
    # channels_last and batches of 100 (the CPU's fast path) change neither the test loss nor the accuracy.
    from mwnet.engine.components import EVAL_BATCH
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
