"""The class-imbalance half: the long-tailed laptop protocol, the baselines' losses (each against the formula by
hand in NumPy), fine-tuning on the meta set, the per-class accuracy, and what is refused."""

import json
import math
import os
import signal

import numpy as np
import pytest
import torch
from conftest import MW, ROOT, WRN, assert_one_line_error, run_main, stop_at, write_fashion

from mwnet.engine.components import build_data
from mwnet.engine.options import parse_args
from mwnet.method import losses
from mwnet.tools import summarize

DOC = os.path.join(ROOT, "docs", "results-fashion-mnist.md")

LOGITS = np.array([[2.0, -1.0, 0.5], [-3.0, 4.0, 0.0], [0.1, 0.2, -0.3], [8.0, -6.0, 1.0]])
TARGETS = np.array([0, 2, 1, 1])


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0])
def test_focal_loss_is_cui_et_als_sigmoid_focal_loss_by_hand(gamma):
    """FL = sum_k -(1 - p_k)^gamma log p_k, p_k = sigmoid(z_k) at the label's class, 1 - sigmoid(z_k) elsewhere."""
    expected = []
    for z, y in zip(LOGITS, TARGETS):
        total = 0.0
        for k, zk in enumerate(z):
            p = sigmoid(zk) if k == y else 1 - sigmoid(zk)
            total += -((1 - p) ** gamma) * math.log(p)
        expected.append(total)
    got = losses.focal_loss(torch.tensor(LOGITS), torch.tensor(TARGETS), gamma).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("beta", [0.0, 0.9, 0.9999])
def test_class_balanced_loss_weights_by_the_inverse_effective_number(beta):
    counts = np.array([500, 50, 5])
    effective = (1 - beta**counts) / (1 - beta)
    alpha = (1 / effective) / (1 / effective).sum() * 3
    log_softmax = LOGITS - np.log(np.exp(LOGITS).sum(1, keepdims=True))
    expected = -alpha[TARGETS] * log_softmax[np.arange(4), TARGETS]
    weights = losses.class_balanced_weights(counts, beta)
    np.testing.assert_allclose(weights.numpy(), alpha, rtol=1e-10)
    got = losses.class_balanced_loss(torch.tensor(LOGITS), torch.tensor(TARGETS), weights).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10)


@pytest.mark.parametrize("tau", [0.0, 1.0, 2.0])
def test_logit_adjusted_loss_shifts_the_logits_by_tau_log_prior(tau):
    counts = np.array([500, 50, 5])
    shifted = LOGITS + tau * np.log(counts / counts.sum())
    expected = -(shifted[np.arange(4), TARGETS] - np.log(np.exp(shifted).sum(1)))
    shift = losses.log_prior_shift(counts, tau)
    got = losses.logit_adjusted_loss(torch.tensor(LOGITS), torch.tensor(TARGETS), shift).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_protocol_laptop_lt_sets_the_class_imbalance_codes_iteration():
    a = parse_args(MW, ["--protocol", "laptop_lt", "--imb_factor", "100"])
    expected = dict(dataset="fashionmnist", arch="smallcnn", num_meta=100, corruption_prob=0.0, nesterov=True)
    expected.update(vnet_optimizer="sgd", vnet_lr=1e-5, vnet_wd=5e-4, normalize_weights=True, augment=False)
    expected.update(detach_vnet_input=False, real_lr_ahead=1, meta_sampling="random", imb_factor=100.0)
    assert {k: getattr(a, k) for k in expected} == expected
    assert a.epochs > 0 and a.milestones == sorted(a.milestones) and a.train_subset % 10 == 0
    given = parse_args(MW, ["--protocol", "laptop_lt", "--vnet_lr", "1e-3", "--detach_vnet_input"])
    assert (given.vnet_lr, given.detach_vnet_input) == (1e-3, True)


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    root = tmp_path_factory.mktemp("fm")
    _, labels = write_fashion(str(root), per_class=40)
    return str(root), labels


def test_the_long_tail_is_cut_from_the_fixed_subset_as_the_class_imbalance_code_cuts_cifar(fashion):
    root, labels = fashion
    for factor in (1, 10):
        flags = [
            "--protocol",
            "laptop_lt",
            "--data_path",
            root,
            "--train_subset",
            "200",
            "--imb_factor",
            str(factor),
            "--batch_size",
            "20",
        ]
        data = build_data(parse_args(MW, flags), torch.device("cpu"), [0, 1, 2])
        counts = np.bincount(labels[data.train_idx], minlength=10)
        # class c keeps int(n_max * (1/factor)^(c/(K-1))) of the subset's n_max = 20 images a class
        assert counts.tolist() == [int(20 * (1 / factor) ** (c / 9)) for c in range(10)]
        assert np.array_equal(data.noisy_labels, labels[data.train_idx])  # no label noise
        assert np.bincount(labels[data.meta_idx], minlength=10).tolist() == [10] * 10
        assert not set(data.meta_idx) & set(data.train_idx)


@pytest.mark.parametrize(
    "flags,fragment",
    [
        (["--imb_factor", "0"], "--imb_factor (largest class / smallest class) must be at least 1, got 0"),
        (["--imb_factor", "0.5"], "must be at least 1, got 0.5"),
        (["--imb_factor", "nan"], "finite"),
        (["--imb_factor", "ten"], "--imb_factor"),
        (
            ["--imb_factor", "30"],
            "imb_factor 30 leaves class 8 without a training image (20 in the largest); pass a factor of at most 20",
        ),
        (["--method", "focal", "--focal_gamma", "-1"], "--focal_gamma must be at least 0, got -1"),
        (["--method", "cb", "--cb_beta", "1"], "--cb_beta must be in [0, 1), got 1"),
        (["--method", "cb", "--cb_beta", "-0.1"], "--cb_beta must be in [0, 1), got -0.1"),
        (["--method", "la", "--la_tau", "-1"], "--la_tau must be at least 0"),
        (["--method", "la", "--la_tau", "inf"], "--la_tau"),
        (["--method", "finetune", "--finetune_iters", "0"], "--finetune_iters must be at least 1, got 0"),
        (["--method", "mwnet", "--cb_beta", "0.9"], "--cb_beta is --method cb's; leave it out with --method mwnet"),
        (["--method", "erm", "--finetune_iters", "5"], "--finetune_iters is --method finetune's"),
    ],
)
def test_a_bad_factor_or_loss_parameter_is_one_line_and_nothing_is_written(capsys, fashion, tmp_path, flags, fragment):
    out = tmp_path / "run"
    base = ["--protocol", "laptop_lt", "--data_path", fashion[0], "--train_subset", "200", "--dry_run"]
    result = run_main(capsys, MW, *base, *flags, "--out", str(out))
    assert_one_line_error(result, fragment)
    assert not out.exists()


def test_the_protocol_counts_epochs_and_the_wrn_script_is_told_so(capsys):
    assert_one_line_error(run_main(capsys, WRN, "--protocol", "laptop_lt"), "counts epochs", "run it with MW-Net.py")


LT = ["--protocol", "laptop_lt", "--train_subset", "200", "--imb_factor", "5", "--batch_size", "20"]
LT += ["--epochs", "4", "--milestones", "2", "3", "--checkpoint_every", "0"]


def whole_run(capsys, root, out, method, *extra):
    result = run_main(capsys, MW, *LT, "--data_path", root, "--method", method, *extra, "--out", str(out))
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", ["focal", "cb", "la", "finetune"])
def test_each_baseline_trains_with_its_loss_and_resumes_to_the_uninterrupted_runs_numbers(
    capsys, fashion, tmp_path, monkeypatch, method
):
    root, _ = fashion
    extra = ["--finetune_iters", "7"] if method == "finetune" else []
    whole = whole_run(capsys, root, tmp_path / "whole", method, *extra)
    plain = whole_run(capsys, root, tmp_path / "erm", "erm")
    iterations = whole[-1]["iteration"]
    out = tmp_path / "stopped"
    stop_at(monkeypatch, iterations - 3, signal.SIGTERM)  # within fine-tuning's 7 iterations, for finetune
    result = run_main(capsys, MW, *LT, "--data_path", root, "--method", method, *extra, "--out", str(out))
    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    monkeypatch.undo()
    assert run_main(capsys, MW, "--resume", str(out)).returncode == 0
    resumed = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    drop = ("elapsed",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in resumed] == [
        {k: v for k, v in r.items() if k not in drop} for r in whole
    ]
    if method == "finetune":  # plain training's run, then 7 iterations on meta batches at its last lr
        same = [{**p, "meta_acc": w["meta_acc"], "elapsed": w["elapsed"]} for p, w in zip(plain, whole)]
        assert whole[: len(plain)] == same
        assert whole[-1]["iteration"] == plain[-1]["iteration"] + 7 and whole[-1]["lr"] == plain[-1]["lr"]
        assert whole[-1]["test_acc"] != plain[-1]["test_acc"] or whole[-1]["train_loss"] != plain[-1]["train_loss"]
    else:  # another loss: other numbers from the first evaluation on
        assert whole[0]["train_loss"] != plain[0]["train_loss"]


def test_each_evaluation_records_every_class_accuracy_which_average_to_the_test_accuracy(capsys, fashion, tmp_path):
    root, labels = fashion
    metrics = whole_run(capsys, root, tmp_path / "run", "erm")
    test_counts = np.bincount(labels[:20], minlength=10)  # write_fashion's test set: the first 20 images
    for m in metrics:
        acc = [a if a is not None else 0.0 for a in m["class_acc"]]
        assert len(acc) == 10
        assert [a is None for a in m["class_acc"]] == [c == 0 for c in test_counts]
        assert np.dot(acc, test_counts) / test_counts.sum() == pytest.approx(m["test_acc"], abs=1e-9)


def test_the_docs_class_imbalance_table_is_what_summarize_prints_from_the_committed_runs(capsys):
    summarize.main(
        ["--runs", os.path.join(ROOT, "results", "laptop"), "--table", "fashionmnist_laptop_lt", "--weights"]
    )
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("### Fashion-MNIST, the long-tailed laptop protocol") and "Left out" not in printed
    assert "(n=" in printed  # committed runs, not an empty table
    with open(DOC) as f:
        assert printed in f.read()


def test_the_tails_clean_and_noisy_weights_are_those_of_the_tail_classes_true_labels_in_weights_npz():
    """Under noise and imbalance at once, the table gives the mean final weight of the clean and the noisy samples
    whose true class is one of the three smallest; checked on the committed runs against their weights.npz."""
    runs = os.path.join(ROOT, "results", "laptop")
    table_cells, *_ = summarize.cells(runs, "fashionmnist_laptop_lt", "fashionmnist")
    checked = 0
    for c in table_cells:
        if c["setting"] != "imb10_unif_p0.4" or c["row"] not in ("mwnet", "l2rw") or c["n"] == 0:
            continue
        folder = os.path.join(runs, "fashionmnist_laptop_lt", "fashionmnist", c["setting"], c["row"])
        by_seed = []
        for seed in sorted(os.listdir(folder)):
            with np.load(os.path.join(folder, seed, "weights.npz")) as w:
                tail, noisy = np.isin(w["clean_labels"], [7, 8, 9]), w["noisy_labels"] != w["clean_labels"]
                by_seed.append((w["weight"][tail & ~noisy].mean(), w["weight"][tail & noisy].mean()))
        assert len(by_seed) == c["n"]
        assert c["tail_weight_clean"] == pytest.approx(np.mean([a for a, _ in by_seed]), abs=1e-6)
        assert c["tail_weight_noisy"] == pytest.approx(np.mean([b for _, b in by_seed]), abs=1e-6)
        checked += 1
    assert checked == 2
    clean = [c for c in table_cells if c["setting"] == "imb100" and c["row"] == "mwnet"]
    assert clean and clean[0]["tail_weight_clean"] is None  # no noise, no such weights
