"""The laptop protocol: SmallCNN, the fixed training subset, the preset, its table and the first command's report."""

import json
import os
import re
import shutil

import numpy as np
import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from conftest import MW, ROOT, WRN, assert_one_line_error, run_main, write_fashion
from test_noise_protocol import original_protocol

from mwnet.engine.components import build_data
from mwnet.engine.options import parse_args
from mwnet.method.meta_step import mwnet_step
from mwnet.models.meta_layers import VNet
from mwnet.models.small import SmallCNN
from mwnet.tools import laptop, summarize

RESULTS = os.path.join(ROOT, "results", "laptop")
DOC = os.path.join(ROOT, "docs", "results-fashion-mnist.md")


def test_smallcnn_has_the_parameters_of_its_layer_shapes():
    """Counted from the shapes: 3x3 convolutions 3 -> 16 -> 32 without bias, BatchNorm's scale and shift,
    a hidden layer of 128 over the 32 x 8 x 8 features, then the classes."""
    k = 10
    expected = 3 * 16 * 9 + 2 * 16 + 16 * 32 * 9 + 2 * 32 + (32 * 8 * 8 + 1) * 128 + (128 + 1) * k
    model = SmallCNN(k)
    assert sum(p.numel() for p in model.parameters()) == expected == 268_698
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, k)


class ReluThenPool(SmallCNN):
    """SmallCNN as first written: ReLU before the max-pool, the order of the description (conv, BN, ReLU, pool)."""

    def forward(self, x):
        out = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        out = F.max_pool2d(F.relu(self.bn2(self.conv2(out))), 2)
        return self.linear(F.relu(self.fc(out.flatten(1))))


def test_relu_after_the_pool_gives_the_same_outputs_gradients_tangents_and_steps_to_the_bit():
    """SmallCNN applies ReLU after the max-pool, on a quarter of the elements: both only select, so its output,
    its gradients, its forward-mode tangents and two MW-Net steps (the step's own BatchNorm tangent included)
    equal those of ReLU before the pool to the bit, in float32, in training mode, windows whose four BatchNorm
    outputs are all negative included (there the two orders' arg-max differ; about one window in 16)."""
    torch.manual_seed(0)
    cl = torch.channels_last  # as the scripts run it
    ours, first = SmallCNN(10).to(memory_format=cl), ReluThenPool(10).to(memory_format=cl)
    first.load_state_dict(ours.state_dict())
    start = ours.conv1.weight.detach().clone()
    x, y = torch.randn(20, 3, 32, 32).to(memory_format=cl), torch.randint(0, 10, (20,))
    params = {k: v.detach() for k, v in ours.named_parameters()}
    h = F.batch_norm(F.conv2d(x, params["conv1.weight"], padding=1), None, None, params["bn1.weight"], training=True)
    assert (F.max_pool2d(h, 2) < 0).float().mean() > 0.02  # the windows where the orders pick different elements
    tangents = {k: torch.randn_like(v) for k, v in params.items()}
    outs = []
    for model in (ours, first):
        with fwAD.dual_level():
            dual = {k: fwAD.make_dual(v, tangents[k]) for k, v in params.items()}
            out, tangent = fwAD.unpack_dual(torch.func.functional_call(model, dual, (x,)))
        xg = x.clone().requires_grad_()
        loss = F.cross_entropy(model(xg), y)
        grads = torch.autograd.grad(loss, [xg, *model.parameters()])
        outs.append([out, tangent, loss, *grads])
    for a, b in zip(*outs):
        assert torch.equal(a, b)
    vnets, optimizers = [], []
    for model in (ours, first):
        torch.manual_seed(1)
        vnet = VNet()
        vnets.append(vnet)
        opt = torch.optim.SGD(model.parameters(), 0.02, momentum=0.9, weight_decay=5e-4)
        optimizers.append((opt, torch.optim.Adam(vnet.parameters(), 1e-3, weight_decay=1e-4)))
    gen = torch.Generator().manual_seed(2)
    for _ in range(2):
        batch = (
            torch.randn(20, 3, 32, 32, generator=gen).to(memory_format=cl),
            torch.randint(0, 10, (20,), generator=gen),
        )
        meta = (
            torch.randn(10, 3, 32, 32, generator=gen).to(memory_format=cl),
            torch.randint(0, 10, (10,), generator=gen),
        )
        for model, vnet, (opt, vopt) in zip((ours, first), vnets, optimizers):
            mwnet_step(model, vnet, opt, vopt, *batch, *meta, 0.02)
    for a, b in zip(
        [*ours.state_dict().values(), *vnets[0].parameters()], [*first.state_dict().values(), *vnets[1].parameters()]
    ):
        assert torch.equal(a, b)
    assert not torch.equal(ours.conv1.weight, start)  # the steps moved it


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    root = tmp_path_factory.mktemp("fm")
    _, labels = write_fashion(str(root), per_class=30)
    return str(root), labels


def split(root, *flags):
    args = parse_args(MW, ["--dataset", "fashionmnist", "--data_path", root, "--train_subset", "100", *flags])
    return build_data(args, torch.device("cpu"), [0, 1, 2])


@pytest.mark.parametrize("ctype,p", [("unif", 0.6), ("flip2", 0.4), ("flip", 0.4)])
def test_the_subset_is_fixed_and_balanced_the_meta_set_apart_and_the_noise_the_protocols(fashion, ctype, p):
    root, labels = fashion
    subsets = set()
    for seed in (1, 2):
        data = split(
            root, "--num_meta", "50", "--corruption_type", ctype, "--corruption_prob", str(p), "--seed", str(seed)
        )
        subset = np.sort(data.train_idx)
        subsets.add(subset.tobytes())
        assert np.array_equal(np.bincount(labels[subset], minlength=10), [10] * 10)  # class-balanced
        assert np.array_equal(np.bincount(labels[data.meta_idx], minlength=10), [5] * 10)
        assert not set(data.meta_idx) & set(data.train_idx)  # no training image is also a meta image
        assert data.subset["images"] == 100
        # the noise: the original's protocol, run on the subset's labels with no meta images taken out of it
        _, ref_train, ref_noisy, _ = original_protocol(labels[subset], 10, 0, ctype, p, seed)
        assert np.array_equal(subset[ref_train], data.train_idx)
        assert np.array_equal(ref_noisy, data.noisy_labels)
    flip = split(root, "--num_meta", "50", "--corruption_type", "flip2", "--seed", "3")
    subsets.add(np.sort(flip.train_idx).tobytes())
    assert len(subsets) == 1  # the same images for every seed and noise


def test_protocol_laptop_sets_the_flags_not_given_in_each_scripts_unit():
    mw = parse_args(MW, ["--protocol", "laptop"])
    expected = dict(dataset="fashionmnist", arch="smallcnn", train_subset=5000, num_meta=100, lr=0.02, augment=False)
    assert {k: getattr(mw, k) for k in expected} == expected
    assert (mw.epochs, mw.milestones, mw.eval_every) == (40, [24, 32], 1)
    wrn = parse_args(WRN, ["--protocol", "laptop"])
    assert (wrn.arch, wrn.iters, wrn.milestones, wrn.eval_every) == ("smallcnn", 2000, [1200, 1600], 50)
    given = parse_args(MW, ["--protocol", "laptop", "--lr", "0.05", "--epochs", "10", "--milestones"])
    assert (given.lr, given.epochs, given.milestones, given.arch) == (0.05, 10, [], "smallcnn")
    assert parse_args(MW, ["--protocol", "laptop", "--augment"]).augment is True
    plain = parse_args(MW, [])  # without it, the original's defaults
    assert (plain.arch, plain.train_subset, plain.protocol, plain.augment) == ("resnet32", 0, None, True)


@pytest.mark.parametrize(
    "flags,fragment",
    [
        (["--protocol", "laptop", "--dataset", "clothing1m"], "--protocol laptop is not for --dataset clothing1m"),
        (["--dataset", "fashionmnist", "--train_subset", "105"], "--train_subset (105) must be a positive multiple"),
        (["--dataset", "fashionmnist", "--train_subset", "-10"], "--train_subset (-10) must be a positive multiple"),
        (
            ["--dataset", "cifar10", "-ctype", "human", "--human_labels", "aggre", "--train_subset", "100"],
            "leave it out",
        ),
        (["--dataset", "fashionmnist", "--train_subset", "400", "--num_meta", "10"], "needs more images than"),
    ],
)
def test_a_wrong_subset_is_one_line_and_nothing_is_written(capsys, fashion, tmp_path, flags, fragment):
    out = tmp_path / "run"
    result = run_main(capsys, MW, *flags, "--data_path", fashion[0], "--dry_run", "--out", str(out))
    assert_one_line_error(result, fragment)
    assert not out.exists()


def test_a_laptop_run_records_its_subset(capsys, fashion, tmp_path):
    root, _ = fashion
    out = tmp_path / "run"
    flags = ["--protocol", "laptop", "--data_path", root, "--train_subset", "100", "--num_meta", "20", "--dry_run"]
    result = run_main(capsys, MW, *flags, "--out", str(out))
    assert result.returncode == 0, result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["arch"] == "smallcnn" and config["train_subset"] == 100 and config["protocol"] == "laptop"
    assert config["train_subset_drawn"]["images"] == 100 and len(config["train_subset_drawn"]["indices_sha256"]) == 16
    split_file = np.load(out / "split.npz")
    assert len(split_file["train_idx"]) == 100 and not set(split_file["meta_idx"]) & set(split_file["train_idx"])
    assert "SmallCNN" in result.stdout and "100 training, 20 meta" in result.stdout


def table_block(text):
    """The laptop table's Markdown as summarize prints it: from its heading to the end of the weights table."""
    match = re.search(
        r"### Fashion-MNIST, the laptop protocol.*?\n\n(?=\S)(?:.*\n)*?Sample weights.*?\n\n(?:\|.*\n)+", text
    )
    assert match, text[:2000]
    return match.group(0)


def test_summarize_over_the_committed_runs_gives_the_docs_table(capsys):
    """docs/results-fashion-mnist.md shows the table that summarize.py computes from results/laptop."""
    assert summarize.main(["--runs", RESULTS, "--table", "fashionmnist_laptop", "--weights"]) == 0
    printed = capsys.readouterr().out
    rows = [line for line in table_block(printed).splitlines() if line.startswith("| ") and "selected" not in line]
    assert len(rows) >= 4 and not [r for r in rows if "missing" in r]  # the paper's rows: every cell holds seeds
    # (the row with a selected meta set was run for two of the five settings)
    with open(DOC) as f:
        assert table_block(printed) in f.read()


def test_the_first_commands_report_comes_from_the_run_files(capsys, tmp_path):
    runs = laptop.run_dirs(RESULTS, 0.6, 1)
    code = laptop.main(["--runs", RESULTS, "--report-only", "--figures", str(tmp_path / "figs")])
    assert code == 0
    out = capsys.readouterr().out
    for row, name in laptop.ROWS:
        results = json.load(open(os.path.join(runs[row], "results.json")))
        line = next(x for x in out.splitlines() if x.strip().startswith(name))
        assert line.split()[-2:] == [f"{results['best_test_acc']:.2f}", f"{results['last_test_acc']:.2f}"]
    last = [json.loads(x) for x in open(os.path.join(runs["mwnet"], "metrics.jsonl"))][-1]
    assert f"clean samples {last['weight_clean']:.3f}, noisy samples {last['weight_noisy']:.3f}" in out
    v_line = next(x for x in out.splitlines() if x.strip().startswith("V "))
    assert v_line.split()[1] == f"{last['vnet_curve'][0]:.3f}"  # V at loss 0
    assert sorted(os.listdir(tmp_path / "figs")) == [
        "test_accuracy.png",
        "weight_histograms.png",
        "weighting_function.png",
    ]


def test_the_report_of_runs_not_made_or_dry_is_one_line(capsys, tmp_path):
    code = laptop.main(["--runs", str(tmp_path), "--report-only"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "run python -m mwnet laptop" in err
    for row, path in laptop.run_dirs(str(tmp_path), 0.6, 1).items():  # the committed runs, marked dry
        shutil.copytree(laptop.run_dirs(RESULTS, 0.6, 1)[row], path)
        config = json.load(open(os.path.join(path, "config.json")))
        json.dump({**config, "dry_run": True}, open(os.path.join(path, "config.json"), "w"))
    code = laptop.main(["--runs", str(tmp_path), "--report-only"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "is a dry run, which is no result" in err


def test_the_report_shows_no_run_but_the_ones_its_heading_names(capsys, tmp_path):
    """A run of another setting in the folder, or two runs that differ in more than the method: one line."""
    committed = laptop.run_dirs(RESULTS, 0.6, 1)
    here = laptop.run_dirs(str(tmp_path), 0.6, 1)
    shutil.copytree(committed["mwnet"], here["mwnet"])
    shutil.copytree(laptop.run_dirs(RESULTS, 0.4, 1)["erm"], here["erm"])  # uniform 40 %, not 60 %
    assert laptop.main(["--runs", str(tmp_path), "--report-only"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "holds another run (protocol laptop, method erm, unif 0.4" in err
    shutil.rmtree(here["erm"])
    shutil.copytree(committed["erm"], here["erm"])
    config = json.load(open(os.path.join(here["erm"], "config.json")))
    json.dump({**config, "lr": 0.05}, open(os.path.join(here["erm"], "config.json"), "w"))
    assert laptop.main(["--runs", str(tmp_path), "--report-only"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "differ in more than the method (lr 0.02 vs 0.05)" in err
