"""Both scripts end to end on the CPU: the run files and their fields, determinism, both datasets."""

import csv
import json
import os

import numpy as np
import pytest
import torch
from conftest import FAST, MW, SMALL_WRN, WRN, metrics, run_main, write_fashion

from mwnet.data.files import FASHION_MNIST_DIR
from mwnet.data.noise import make_noisy_split
from mwnet.engine.options import parse_args

METRIC_KEYS = {
    "iteration",
    "epoch",
    "lr",
    "train_loss",
    "meta_loss",
    "train_ce",
    "test_loss",
    "test_acc",
    "class_acc",
    "best_acc",
    "weight_clean",
    "weight_noisy",
    "meta_acc",
    "loss_auroc",
    "weight_auroc",
    "vnet_curve",
    "elapsed",
}
RUN_FILES = [
    ".lock",
    ".mwnet-run",
    "checkpoint.pt",
    "config.json",
    "metrics.jsonl",
    "model_best.pt",
    "model_meta_best.pt",
    "results.json",
    "split.npz",
    "train.log",
    "weighting_function.csv",
    "weights.npz",
]


def dry_run(capsys, script, out, *args):
    result = run_main(capsys, script, "--dry_run", "--out", str(out), *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture
def mw_run(capsys, cifar10_dir, tmp_path):
    root, _ = cifar10_dir
    dry_run(capsys, MW, tmp_path / "mw", "--data_path", root, *FAST)
    return root, tmp_path / "mw"


def test_run_files_and_fields(mw_run, cifar10_dir):
    _, out = mw_run
    _, (_, labels, _) = cifar10_dir
    assert sorted(os.listdir(out)) == RUN_FILES
    config = json.load(open(out / "config.json"))
    assert config["corruption_prob"] == 0.4 and config["script"] == MW and config["seed"] == 1
    assert config["precision"] == "fp32" and config["environment"]["numerics"]
    assert config["environment"]["torch"] == torch.__version__ and config["environment"]["device"] == "cpu"
    assert set(vars(parse_args(MW, []))) <= set(config)  # every argument
    lines = metrics(out, drop=())
    assert [r["iteration"] for r in lines] == [2, 4] and all(set(r) == METRIC_KEYS for r in lines)
    assert [r["epoch"] for r in lines] == [1.0, 2.0] and lines[0]["lr"] == 0.1
    assert len(lines[-1]["vnet_curve"]) == len(config["vnet_loss_grid"]) == len(config["vnet_curve_init"])
    assert all(0 < w < 1 for w in lines[-1]["vnet_curve"]) and 0 <= lines[-1]["test_acc"] <= 100
    results = json.load(open(out / "results.json"))
    assert results["status"] == "finished" and results["precision"] == "fp32"
    assert results["best_test_acc"] == max(r["test_acc"] for r in lines)
    assert results["last_test_acc"] == lines[-1]["test_acc"]
    assert results["iterations"] == 4 and results["iters_per_sec"] > 0 and results["wall_time"] > 0
    split = np.load(out / "split.npz")
    meta_idx, train_idx, noisy = make_noisy_split(labels, 10, 100, "unif", 0.4, 1)
    np.testing.assert_array_equal(split["meta_idx"], meta_idx)
    np.testing.assert_array_equal(split["train_idx"], train_idx)
    np.testing.assert_array_equal(split["noisy_labels"], noisy)
    np.testing.assert_array_equal(split["clean_labels"], labels[train_idx])
    assert results["noise_rate"] == pytest.approx(np.mean(split["clean_labels"] != split["noisy_labels"]))
    weights = np.load(out / "weights.npz")
    np.testing.assert_array_equal(weights["is_noisy"], split["clean_labels"] != split["noisy_labels"])
    seen = ~np.isnan(weights["weight"])
    assert seen.sum() == 4 * 32 and np.all((weights["weight"][seen] > 0) & (weights["weight"][seen] < 1))
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["progress"]["step"] == 4 and state["progress"]["best_acc"] == results["best_test_acc"]
    assert state["progress"]["records"] == metrics(out, drop=()) and state["vnet"] is not None
    assert {"model", "optimizer", "vnet_optimizer", "train_loader", "meta_loader", "torch_rng", "config"} <= set(state)
    with open(out / "weighting_function.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["loss", "weight"]  # the final meta-weight-net's curve, as in the last metrics line
    assert [float(w) for _, w in rows[1:]] == lines[-1]["vnet_curve"]
    assert [float(x) for x, _ in rows[1:]] == config["vnet_loss_grid"]


def test_same_seed_same_metrics(capsys, mw_run, tmp_path):
    root, out = mw_run
    dry_run(capsys, MW, tmp_path / "again", "--data_path", root, *FAST)
    assert metrics(tmp_path / "again") == metrics(out)
    dry_run(capsys, MW, tmp_path / "seed2", "--data_path", root, *FAST, "--seed", "2")
    assert metrics(tmp_path / "seed2") != metrics(out)


@pytest.mark.parametrize("method", ["l2rw", "erm"])
def test_wrn_script_dry_run_on_cifar(capsys, cifar10_dir, tmp_path, method):
    root, _ = cifar10_dir
    result = dry_run(capsys, WRN, tmp_path / method, "--data_path", root, *FAST, *SMALL_WRN, "--method", method)
    lines = metrics(tmp_path / method)
    assert [r["iteration"] for r in lines] == [2, 4] and all(r["vnet_curve"] is None for r in lines)
    if method == "erm":  # plain training has no meta loss: null, shown as -
        assert all(r["weight_clean"] in (1.0, None) and r["meta_loss"] is None for r in lines)
        assert all("  meta -  " in line for line in result.stdout.splitlines() if line.startswith("eval "))
    else:
        assert all(r["meta_loss"] > 0 for r in lines)
    config = json.load(open(tmp_path / method / "config.json"))
    assert config["arch"] == "wrn" and config["sampling"] == "random" and config["normalize_weights"] is True
    assert not (tmp_path / method / "weighting_function.csv").exists()  # no meta-weight-net


def test_class_imbalance_flags_run(capsys, cifar10_dir, tmp_path):
    """The long-tailed table's MW-Net row: V fed the loss undetached, the real lr ahead, fresh meta batches."""
    root, _ = cifar10_dir
    flags = ["--imb_factor", "10", "--corruption_prob", "0", "--no-detach_vnet_input", "--real_lr_ahead", "1"]
    flags += ["--meta_sampling", "random", "--normalize_weights", "--nesterov", "true"]
    dry_run(capsys, MW, tmp_path / "lt", "--data_path", root, *FAST, *flags)
    lines = metrics(tmp_path / "lt")
    assert [r["lr"] for r in lines] == [0.1, 0.1] and lines[-1]["weight_noisy"] is None  # no noisy samples
    config = json.load(open(tmp_path / "lt" / "config.json"))
    assert (config["detach_vnet_input"], config["real_lr_ahead"], config["meta_sampling"]) == (False, 1, "random")


def fashion_root(tmp_path):
    if os.path.isdir(FASHION_MNIST_DIR):
        return FASHION_MNIST_DIR
    write_fashion(str(tmp_path / "fm"), per_class=150)
    return str(tmp_path / "fm")


@pytest.mark.parametrize("script", [MW, WRN])
def test_dry_run_on_fashion_mnist(capsys, tmp_path, script):
    root = fashion_root(tmp_path)
    extra = SMALL_WRN if script == WRN else []
    args = ["--dataset", "fashionmnist", "--data_path", root, "--corruption_prob", "0.6", *FAST, *extra]
    dry_run(capsys, script, tmp_path / "run", *args)
    results = json.load(open(tmp_path / "run" / "results.json"))
    assert results["noise_rate"] == pytest.approx(0.54, abs=0.05)
    assert len(metrics(tmp_path / "run")) == 2
