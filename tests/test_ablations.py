"""The laptop ablations: the loss-separation diagnostic every run records, the two flags the ablations add
(--clean_warmup, --meta_from inside) and the ablation table's rows, told apart by their flags."""

import json
import os
import shutil

import numpy as np
import pytest
import torch
from conftest import MW, ROOT, metrics, run_main, write_fashion
from test_noise_protocol import original_protocol

from mwnet.data.subset import fixed_subset
from mwnet.engine.components import build_data
from mwnet.engine.options import parse_args
from mwnet.runs.separation import auroc
from mwnet.tools import ablations, summarize

RESULTS = os.path.join(ROOT, "results", "laptop")


def pairwise_auroc(pos, neg):
    """The definition itself: over every (corrupted, clean) pair, 1 where the corrupted one scores higher, 1/2 on a tie."""
    pos, neg = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def test_auroc_is_the_share_of_pairs_ordered_ties_counting_half_never_drawn_left_out():
    rng = np.random.default_rng(0)
    score = rng.integers(0, 7, 400).astype(float)  # few values: many ties
    score[rng.choice(400, 30, replace=False)] = np.nan
    noisy = rng.random(400) < 0.3
    clean = ~noisy & (rng.random(400) < 0.9)  # some samples of neither kind (a clean label unknown)
    drawn = ~np.isnan(score)
    expected = pairwise_auroc(score[noisy & drawn], score[clean & drawn])
    assert auroc(score, noisy, clean) == pytest.approx(expected, abs=5e-7)  # rounded to 6 digits
    assert auroc(np.arange(4.0), np.array([0, 0, 1, 1], bool), np.array([1, 1, 0, 0], bool)) == 1.0
    assert auroc(np.ones(4), np.array([0, 0, 1, 1], bool), np.array([1, 1, 0, 0], bool)) == 0.5
    assert auroc(score, np.zeros(400, bool), clean) is None  # no corrupted label: nothing to separate


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    root = tmp_path_factory.mktemp("fm")
    _, labels = write_fashion(str(root), per_class=30)
    return str(root), labels


@pytest.mark.parametrize("ctype,p,seed", [("unif", 0.6, 1), ("flip2", 0.4, 1), ("flip", 0.4, 2)])
def test_meta_from_inside_is_the_originals_split_run_on_the_subset(fashion, ctype, p, seed):
    """The original's protocol on the subset's labels: the same training images in the same order and the same
    noisy labels for every seed, the same meta set at seed 1 (at another seed the original's meta set overlaps
    its training set; ours never does, as for the whole training set)."""
    root, labels = fashion
    subset, _ = fixed_subset(labels, 10, 100)
    flags = ["--dataset", "fashionmnist", "--data_path", root, "--train_subset", "100", "--num_meta", "20", "-b", "20"]
    flags += ["--meta_from", "inside", "--corruption_type", ctype, "--corruption_prob", str(p), "--seed", str(seed)]
    data = build_data(parse_args(MW, flags), torch.device("cpu"), [0, 1, 2])
    ref_meta, ref_train, ref_noisy, _ = original_protocol(labels[subset], 10, 20, ctype, p, seed)
    assert np.array_equal(data.train_idx, subset[ref_train]) and np.array_equal(data.noisy_labels, ref_noisy)
    assert np.array_equal(data.meta_idx, subset[ref_meta]) == (seed == 1)
    assert sorted([*data.meta_idx, *data.train_idx]) == sorted(subset)  # the meta images are left out of training


LAPTOP_SMALL = ["--protocol", "laptop", "--train_subset", "100", "--num_meta", "20", "--batch_size", "20"]
LAPTOP_SMALL += ["--epochs", "4", "--milestones", "3", "--corruption_type", "flip2", "--corruption_prob", "0.4"]


def test_the_separation_recorded_at_the_end_is_the_auroc_of_the_final_losses_and_weights(fashion, tmp_path, capsys):
    root, _ = fashion
    out = str(tmp_path / "run")
    assert run_main(capsys, MW, *LAPTOP_SMALL, "--data_path", root, "--out", out).returncode == 0
    lines, w = metrics(out), np.load(os.path.join(out, "weights.npz"))
    assert all(0 <= m["loss_auroc"] <= 1 and 0 <= m["weight_auroc"] <= 1 for m in lines)
    noisy, clean = w["is_noisy"], ~w["is_noisy"]
    loss, weight = w["loss"].astype(float), w["weight"].astype(float)
    assert lines[-1]["loss_auroc"] == pytest.approx(pairwise_auroc(loss[noisy], loss[clean]), abs=5e-7)
    assert lines[-1]["weight_auroc"] == pytest.approx(pairwise_auroc(-weight[noisy], -weight[clean]), abs=5e-7)


def test_clean_warmup_trains_plainly_first_then_the_method_from_where_plain_training_stood(fashion, tmp_path, capsys):
    """Its evaluations within the warm-up equal plain training's, number for number (same model, same batches, no
    meta batch drawn); after it, the meta-weight-net trains (a meta loss, a weighting function that moved)."""
    root, _ = fashion
    common = [*LAPTOP_SMALL, "--data_path", root, "--warmup", "2"]
    plain, warm = str(tmp_path / "plain"), str(tmp_path / "warm")
    assert run_main(capsys, MW, *common, "--method", "erm", "--out", plain).returncode == 0
    result = run_main(capsys, MW, *common, "--clean_warmup", "--out", warm)
    assert result.returncode == 0 and "20 meta, used from iteration 10" in result.stdout
    ours, theirs = metrics(warm), metrics(plain)
    same = ("train_ce", "test_loss", "test_acc", "loss_auroc")
    for a, b in zip(ours[:2], theirs[:2], strict=True):
        assert {k: a[k] for k in same} == {k: b[k] for k in same} and a["meta_loss"] is None
    assert ours[1]["vnet_curve"] == ours[0]["vnet_curve"]  # untouched in the warm-up
    assert ours[2]["meta_loss"] is not None and ours[2]["vnet_curve"] != ours[1]["vnet_curve"]
    assert ours[2]["test_loss"] != theirs[2]["test_loss"]
    with open(os.path.join(warm, "config.json")) as f:
        assert json.load(f)["clean_warmup"] is True


def test_every_variant_is_one_configuration_of_its_own():
    configs = set()
    for row in ablations.ROWS:
        for kind, p in ablations.settings_of(row):
            args = vars(parse_args(MW, ablations.expected_argv(row, kind, p, 1)))
            configs.add(json.dumps(args, sort_keys=True, default=str))
    assert len(configs) == sum(len(ablations.settings_of(row)) for row in ablations.ROWS)
    assert set(ablations.RUN_ORDER) == set(ablations.VARIANTS)


def test_the_table_counts_a_run_only_under_the_row_whose_flags_it_has(tmp_path, capsys):
    """The control rows are the laptop table's committed runs; a control run copied into a variant's folder is
    left out of it, named with the flag that differs."""
    runs = str(tmp_path)
    shutil.copytree(os.path.join(RESULTS, "fashionmnist_laptop"), os.path.join(runs, "fashionmnist_laptop"))
    src = os.path.join(RESULTS, "fashionmnist_laptop", "fashionmnist", "flip2_p0.4", "mwnet", "seed1")
    shutil.copytree(src, os.path.join(runs, ablations.TABLE, "fashionmnist", "flip2_p0.4", "mwnet_cwarm", "seed1"))
    assert summarize.main(["--runs", runs, "--table", ablations.TABLE]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| MW-Net (the laptop protocol) |"))
    assert "best 77.24 ± 0.35, last 58.67 ± 1.74 (n=3)" in row
    warm = next(line for line in out.splitlines() if line.startswith("| MW-Net, clean meta set after"))
    assert warm.count("missing") == 3
    assert "mwnet_cwarm/seed1: its flags are not its row's (clean_warmup, warmup)" in out


def test_the_docs_ablation_table_is_what_summarize_prints_from_the_committed_runs(capsys):
    assert summarize.main(["--runs", RESULTS, "--table", ablations.TABLE]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("### Fashion-MNIST, the laptop protocol, one factor") and "Left out" not in printed
    assert "missing" not in printed  # every variant run, 3 seeds a cell
    with open(os.path.join(ROOT, "docs", "results-fashion-mnist.md")) as f:
        assert printed in f.read()
