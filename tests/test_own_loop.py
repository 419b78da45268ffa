"""The method in one's own training loop: examples/own_loop.py runs, and a step through the public entry point
(`from mwnet import VNet, mwnet_step`, with the optimisers as the example sets them up) is the scripts' step."""

import copy
import os
import runpy
import types

import torch
from conftest import MW, ROOT, one_thread

import mwnet
from mwnet.engine import training
from mwnet.engine.components import build_learner
from mwnet.engine.options import parse_args
from mwnet.method import meta_step


def test_the_example_trains_and_reads_out_the_weights(capsys, monkeypatch):
    example = runpy.run_path(os.path.join(ROOT, "examples", "own_loop.py"), run_name="own_loop")
    with one_thread():
        model, vnet, out = example["main"](iterations=2)
    assert out["weights"].shape == (32,) and bool(((out["weights"] > 0) & (out["weights"] < 1)).all())
    assert capsys.readouterr().out.count("iteration ") == 2
    assert isinstance(vnet, mwnet.VNet) and mwnet.mwnet_step is meta_step.mwnet_step
    called = []  # and the scripts' loop takes its MW-Net step through that same function
    monkeypatch.setattr(meta_step, "mwnet_step", lambda *a, **k: called.append(a) or {})
    learner = types.SimpleNamespace(model=model, vnet=vnet, optimizer=None, vnet_optimizer=None)
    data = types.SimpleNamespace(meta=types.SimpleNamespace(next_batch=lambda: (1, 2, 3)))
    training.one_step(parse_args(MW, []), learner, data, "x", "y", 0.1)
    assert len(called) == 1 and called[0][:2] == (model, vnet) and called[0][6:8] == (1, 2)


def test_a_step_through_the_public_entry_point_is_the_scripts_step():
    args = parse_args(MW, ["--arch", "smallcnn"])  # MW-Net.py's defaults: lr 0.1, SGD momentum 0.9, Adam 1e-3
    script = build_learner(args, 10, torch.device("cpu"), seed=0)
    model, vnet = copy.deepcopy(script.model), copy.deepcopy(script.vnet)
    optimizer = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9, weight_decay=5e-4)  # as the example's
    vnet_optimizer = torch.optim.Adam(vnet.parameters(), 1e-3, weight_decay=1e-4)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g)
    mx, my = torch.randn(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g)
    data = types.SimpleNamespace(meta=types.SimpleNamespace(next_batch=lambda: (mx, my, None)))
    with one_thread():
        theirs = training.one_step(args, script, data, x, y, args.lr)
        ours = mwnet.mwnet_step(model, vnet, optimizer, vnet_optimizer, x, y, mx, my, 0.1)
    # the same operations in the same order on the CPU: equal to the bit
    assert torch.equal(theirs["weights"], ours["weights"]) and torch.equal(theirs["loss"], ours["loss"])
    for a, b in [
        *zip(script.model.parameters(), model.parameters()),
        *zip(script.vnet.parameters(), vnet.parameters()),
    ]:
        assert torch.equal(a, b)
