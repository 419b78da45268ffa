"""Both scripts end to end on the CPU: dry runs, run files, resume, determinism, flags, mistakes."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import ROOT, assert_one_line_error, run_cli, write_fashion

from load_corrupted_data import FASHION_MNIST_DIR, UserError, make_noisy_split
from options import build_parser, parse_args
from training import build_model, make_plan

MW, WRN = "MW-Net.py", "train_WRN-28-10_Meta_PGC.py"
SMALL_WRN = ["--layers", "10", "--widen-factor", "1"]
FAST = ["--batch_size", "32", "--num_meta", "100"]
METRIC_KEYS = {
    "iteration",
    "epoch",
    "lr",
    "train_loss",
    "meta_loss",
    "train_ce",
    "test_loss",
    "test_acc",
    "best_acc",
    "weight_clean",
    "weight_noisy",
    "vnet_curve",
    "elapsed",
}


def metrics(run_dir, drop=("elapsed",)):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in f]


def dry_run(script, out, *args):
    proc = run_cli(script, "--dry_run", "--out", str(out), *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def mw_run(cifar10_dir, tmp_path_factory):
    root, _ = cifar10_dir
    out = tmp_path_factory.mktemp("runs") / "mw"
    dry_run(MW, out, "--data_path", root, *FAST)
    return root, out


def test_run_files_and_fields(mw_run, cifar10_dir):
    _, out = mw_run
    _, (_, labels, _) = cifar10_dir
    assert sorted(os.listdir(out)) == [
        "checkpoint.pt",
        "config.json",
        "metrics.jsonl",
        "results.json",
        "split.npz",
        "weights.npz",
    ]
    config = json.load(open(out / "config.json"))
    assert config["corruption_prob"] == 0.4 and config["script"] == MW and config["seed"] == 1
    assert config["environment"]["torch"] == torch.__version__ and config["environment"]["device"] == "cpu"
    assert set(vars(parse_args(MW, []))) <= set(config)  # every argument
    lines = metrics(out, drop=())
    assert [r["iteration"] for r in lines] == [2, 4] and all(set(r) == METRIC_KEYS for r in lines)
    assert [r["epoch"] for r in lines] == [1.0, 2.0] and lines[0]["lr"] == 0.1
    assert len(lines[-1]["vnet_curve"]) == len(config["vnet_loss_grid"])
    assert all(0 < w < 1 for w in lines[-1]["vnet_curve"]) and 0 <= lines[-1]["test_acc"] <= 100
    results = json.load(open(out / "results.json"))
    assert (
        results["best_test_acc"] == max(r["test_acc"] for r in lines)
        and results["last_test_acc"] == lines[-1]["test_acc"]
    )
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
    assert state["step"] == 4 and state["best_acc"] == results["best_test_acc"] and state["vnet"] is not None
    assert {"model", "optimizer", "vnet_optimizer", "train_loader", "meta_loader", "torch_rng", "config"} <= set(state)


def test_same_seed_same_metrics(mw_run, tmp_path):
    root, out = mw_run
    dry_run(MW, tmp_path / "again", "--data_path", root, *FAST)
    assert metrics(tmp_path / "again") == metrics(out)
    other = dry_run(MW, tmp_path / "seed2", "--data_path", root, *FAST, "--seed", "2")
    assert other.returncode == 0 and metrics(tmp_path / "seed2") != metrics(out)


def test_resume_equals_uninterrupted(cifar10_dir, tmp_path):
    """Stop a run (Ctrl-C) after its first checkpoint, resume it: the metrics equal an uninterrupted run's.
    Half an epoch, 18 iterations evaluated every 4: the stop lands with some 14 iterations (seconds) to go."""
    root, _ = cifar10_dir
    flags = ["--epochs", "0.5", "--eval_every", "0.1", "--data_path", root, *FAST]
    whole = run_cli(MW, "--out", str(tmp_path / "whole"), *flags)
    assert whole.returncode == 0, whole.stderr[-2000:]
    assert [m["iteration"] for m in metrics(tmp_path / "whole")] == [4, 8, 12, 16, 18]
    run_dir = tmp_path / "stopped"
    cmd = [sys.executable, MW, "--out", str(run_dir), *flags]
    # SIGINT back to its default in the child: a shell that starts the tests in the background (`cmd &`)
    # hands them SIGINT ignored, and Python then never turns Ctrl-C into KeyboardInterrupt.
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 300
    while not (run_dir / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130 and "--resume" in err  # it was stopped, not finished
    assert len(metrics(run_dir)) < len(metrics(tmp_path / "whole")) and not (run_dir / "results.json").exists()
    resumed = run_cli(MW, "--resume", str(run_dir), *flags)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert metrics(run_dir) == metrics(tmp_path / "whole")
    results = [json.load(open(d / "results.json")) for d in (run_dir, tmp_path / "whole")]
    assert results[0]["best_test_acc"] == results[1]["best_test_acc"]
    weights = [np.load(d / "weights.npz")["weight"] for d in (run_dir, tmp_path / "whole")]
    np.testing.assert_array_equal(*weights)


@pytest.mark.parametrize("method", ["l2rw", "erm"])
def test_wrn_script_dry_run_on_cifar(cifar10_dir, tmp_path, method):
    root, _ = cifar10_dir
    dry_run(WRN, tmp_path / method, "--data_path", root, *FAST, *SMALL_WRN, "--method", method)
    lines = metrics(tmp_path / method)
    assert [r["iteration"] for r in lines] == [2, 4] and all(r["vnet_curve"] is None for r in lines)
    if method == "erm":
        assert all(r["weight_clean"] in (1.0, None) and r["meta_loss"] == 0 for r in lines)
    config = json.load(open(tmp_path / method / "config.json"))
    assert config["arch"] == "wrn" and config["sampling"] == "random" and config["normalize_weights"] is True


def fashion_root(tmp_path):
    if os.path.isdir(FASHION_MNIST_DIR):
        return FASHION_MNIST_DIR
    write_fashion(str(tmp_path / "fm"), per_class=150)
    return str(tmp_path / "fm")


@pytest.mark.parametrize("script", [MW, WRN])
def test_dry_run_on_fashion_mnist(tmp_path, script):
    root = fashion_root(tmp_path)
    extra = SMALL_WRN if script == WRN else []
    dry_run(
        script,
        tmp_path / "run",
        "--dataset",
        "fashionmnist",
        "--data_path",
        root,
        "--corruption_prob",
        "0.6",
        *FAST,
        *extra,
    )
    results = json.load(open(tmp_path / "run" / "results.json"))
    assert results["noise_rate"] == pytest.approx(0.54, abs=0.05)
    assert len(metrics(tmp_path / "run")) == 2


ORIGINAL_DEFAULTS = {
    "dataset": "cifar10",
    "corruption_prob": 0.4,
    "corruption_type": "unif",
    "num_meta": 1000,
    "start_epoch": 0,
    "batch_size": 100,
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "print_freq": 10,
    "layers": 28,
    "widen_factor": 10,
    "droprate": 0.0,
    "augment": True,
    "resume": "",
    "name": "WideResNet-28-10",
    "seed": 1,
    "prefetch": 0,
}
ORIGINAL_FLAGS = [
    "--dataset",
    "--corruption_prob",
    "--corruption_type",
    "-ctype",
    "--num_meta",
    "--epochs",
    "--iters",
    "--start-epoch",
    "--batch_size",
    "--batch-size",
    "-b",
    "--lr",
    "--learning-rate",
    "--momentum",
    "--nesterov",
    "--weight-decay",
    "--wd",
    "--print-freq",
    "-p",
    "--layers",
    "--widen-factor",
    "--droprate",
    "--no-augment",
    "--resume",
    "--name",
    "--seed",
    "--prefetch",
]


@pytest.mark.parametrize("script,epochs,iters,nesterov", [(MW, 120, 60000, False), (WRN, 60, 20000, True)])
def test_help_lists_every_original_flag_with_its_default(script, epochs, iters, nesterov):
    args = parse_args(script, [])
    assert {k: getattr(args, k) for k in ORIGINAL_DEFAULTS} == ORIGINAL_DEFAULTS
    assert (args.epochs, args.iters, args.nesterov) == (epochs, iters, nesterov)
    text = " ".join(build_parser(script).format_help().split())  # argparse wraps lines
    for flag in ORIGINAL_FLAGS:
        assert f" {flag}" in text, flag
    for value in [
        "(default: 0.4)",
        "(default: unif)",
        f"(default: {epochs})",
        f"(default: {iters})",
        "(default: WideResNet-28-10)",
        "(default: 0.0005)",
    ]:
        assert value in text, value
    proc = run_cli(script, "--help")
    assert proc.returncode == 0 and "--corruption_prob" in proc.stdout


def test_presets_reproduce_the_original_scripts():
    mw, wrn = parse_args(MW, []), parse_args(WRN, [])
    assert (mw.arch, mw.unit, mw.sampling, mw.milestones, mw.eval_every) == ("resnet32", "epoch", "epoch", [80, 100], 1)
    assert (wrn.arch, wrn.unit, wrn.sampling, wrn.milestones, wrn.eval_every) == (
        "wrn",
        "iter",
        "random",
        [18000, 19000],
        100,
    )
    assert (mw.normalize_weights, wrn.normalize_weights, mw.method, mw.meta_grad) == (False, True, "mwnet", "jvp")
    plan = make_plan(mw, batches_per_epoch=490, n_train=49000)
    assert (plan.total, plan.eval_period) == (120 * 490, 490)
    assert [plan.lr_at(s) for s in (0, 80 * 490 - 1, 80 * 490, 100 * 490 - 1, 100 * 490)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001]
    )
    plan = make_plan(wrn, batches_per_epoch=490, n_train=49000)
    assert (plan.total, plan.eval_period) == (20000, 100) and plan.is_eval(99) and not plan.is_eval(100)
    assert [plan.lr_at(s) for s in (17999, 18000, 18999, 19000)] == pytest.approx([0.1, 0.01, 0.01, 0.001])
    _, _, opt, vopt = build_model(mw, 10, torch.device("cpu"), 0)
    assert isinstance(vopt, torch.optim.Adam) and vopt.defaults["weight_decay"] == 1e-4 and vopt.defaults["lr"] == 1e-3
    assert (
        opt.defaults["nesterov"] is False and opt.defaults["momentum"] == 0.9 and opt.defaults["weight_decay"] == 5e-4
    )
    _, _, opt, vopt = build_model(parse_args(WRN, SMALL_WRN), 10, torch.device("cpu"), 0)
    assert (
        isinstance(vopt, torch.optim.SGD)
        and vopt.defaults["nesterov"] is True
        and vopt.defaults["weight_decay"] == 5e-4
    )
    assert vopt.defaults["momentum"] == 0.9 and vopt.defaults["lr"] == 1e-3 and opt.defaults["nesterov"] is True


def test_fractional_epochs_shorten_the_schedule():
    # Integer epochs keep the original's rule (lr x0.1 once epoch >= m) at every iteration.
    plan = make_plan(parse_args(MW, ["--milestones", "2", "3", "--epochs", "4"]), batches_per_epoch=7, n_train=700)
    assert [plan.lr_at(s) for s in range(28)] == pytest.approx(
        [0.1 * 0.1 ** ((s // 7 >= 2) + (s // 7 >= 3)) for s in range(28)]
    )
    args = parse_args(MW, ["--epochs", "0.25", "--milestones", "0.1667", "0.2083", "--eval_every", "0.1"])
    assert (args.epochs, args.milestones, args.eval_every) == (0.25, [0.1667, 0.2083], 0.1)
    assert parse_args(MW, ["--epochs", "3.0"]).epochs == 3 and isinstance(
        parse_args(MW, ["--epochs", "3.0"]).epochs, int
    )
    plan = make_plan(args, batches_per_epoch=590, n_train=59000)
    assert (plan.total, plan.eval_period) == (148, 59)  # round(0.25 * 590), round(0.1 * 590)
    assert [plan.lr_at(s) for s in (97, 98, 122, 123, 147)] == pytest.approx([0.1, 0.01, 0.01, 0.001, 0.001])
    assert [s for s in range(148) if plan.is_eval(s)] == [58, 117, 147]
    with pytest.raises(SystemExit):  # the iteration-based script counts whole iterations
        parse_args(WRN, ["--milestones", "0.5"])
    with pytest.raises(UserError, match="less than one iteration"):
        make_plan(parse_args(MW, ["--epochs", "0.0001"]), batches_per_epoch=590, n_train=59000)


def test_nesterov_flag_parses_booleans():
    assert parse_args(WRN, ["--nesterov", "False"]).nesterov is False  # type=bool made this True
    assert parse_args(MW, ["--nesterov", "true"]).nesterov is True


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["--corruption_prob", "2"], ["[0, 1]"]),
        (["--lr", "-1"], ["--lr must be positive"]),
        (["--method", "bogus"], ["invalid choice"]),
        (["--corruption_type", "gauss"], ["invalid choice"]),
        (["--corruption_type", "hierarchical"], ["cifar100"]),
        (["--num_meta", "105"], ["multiple"]),
        (["--nesterov", "maybe"], ["true or false"]),
        (["--milestones", "100", "80"], ["ascending"]),
        (["--epochs", "ten"], ["number of epochs"]),
        (["--epochs", "-0.5"], ["--epochs must be positive"]),
    ],
)
def test_bad_flags_are_one_line(cifar10_dir, tmp_path, args, fragments):
    root, _ = cifar10_dir
    proc = run_cli(MW, "--dry_run", "--out", str(tmp_path / "x"), "--data_path", root, *args)
    assert_one_line_error(proc, *fragments)
    assert not (tmp_path / "x").exists()


def test_run_shorter_than_one_iteration_is_refused_before_any_file(cifar10_dir, tmp_path):
    root, _ = cifar10_dir
    proc = run_cli(MW, "--out", str(tmp_path / "x"), "--data_path", root, "--epochs", "0.001", *FAST)
    assert_one_line_error(proc, "--epochs 0.001", "less than one iteration")
    assert not (tmp_path / "x").exists()


def test_missing_data_and_bad_device(tmp_path):
    proc = run_cli(MW, "--dry_run", "--out", str(tmp_path / "x"), "--data_path", str(tmp_path / "nowhere"))
    assert_one_line_error(proc, "cifar10", str(tmp_path / "nowhere"), "--data_path")
    proc = run_cli(WRN, "--layers", "27")
    assert_one_line_error(proc, "6n + 4")
    if not torch.cuda.is_available():
        assert_one_line_error(run_cli(MW, "--device", "cuda"), "no CUDA device")
    assert not (tmp_path / "x").exists()


def test_existing_run_other_checkpoint_and_corrupt_checkpoint(mw_run, tmp_path):
    root, out = mw_run
    before = {f: os.path.getmtime(out / f) for f in os.listdir(out)}
    assert_one_line_error(
        run_cli(MW, "--dry_run", "--out", str(out), "--data_path", root, *FAST), "already holds a run", "--resume"
    )
    proc = run_cli(MW, "--dry_run", "--resume", str(out), "--data_path", root, *FAST, "--lr", "0.2")
    assert_one_line_error(proc, "lr=0.1", "0.2")
    assert {f: os.path.getmtime(out / f) for f in os.listdir(out)} == before  # nothing overwritten
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert_one_line_error(run_cli(MW, "--resume", str(bad)), "not a readable checkpoint")
    assert_one_line_error(run_cli(MW, "--resume", str(tmp_path / "none")), "no checkpoint")
    early = tmp_path / "early"  # stopped before its first evaluation: only config and split
    early.mkdir()
    (early / "config.json").write_text("{}")
    (early / "split.npz").write_bytes(b"")
    assert_one_line_error(run_cli(MW, "--resume", str(early)), "starts again without --resume")
    proc = run_cli(MW, "--dry_run", "--out", str(early), "--data_path", root, *FAST)
    assert proc.returncode == 0 and (early / "results.json").exists()
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state["device_type"] = "cuda"
    moved = tmp_path / "moved"
    moved.mkdir()
    torch.save(state, moved / "checkpoint.pt")
    proc = run_cli(MW, "--dry_run", "--resume", str(moved), "--data_path", root, *FAST, "--device", "cpu")
    assert_one_line_error(proc, "was made on cuda", "--device cuda")
