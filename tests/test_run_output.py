"""What a run shows and leaves: the start block, one line per evaluation, train.log, the best model,
--evaluate, the exported weighting function and TensorBoard events."""

import csv
import importlib.util
import json
import os
import re
import shutil
import signal

import numpy as np
import pytest
import torch
from conftest import (
    FAST,
    MW,
    SHORT,
    assert_in_suspect_order,
    assert_one_line_error,
    metrics,
    run_main,
    snapshot,
    stop_at,
)

from mwnet.runs.reporting import Reporter
from mwnet.runs.run_files import SAMPLE_COLUMNS, read_samples
from mwnet.tools import suspects


def lines_of(text, prefix):
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_a_run_shows_where_what_and_how_long_then_a_line_per_evaluation(capsys, cifar10_dir, tmp_path):
    root, _ = cifar10_dir
    run = tmp_path / "run"
    result = run_main(capsys, MW, "--dry_run", "--out", str(run), "--data_path", root, *FAST)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("MW-Net.py: mwnet (dry run, ResNet-32) on cifar10, unif noise p=0.4; ")
    assert re.search(r"unif noise p=0.4; \d+\.\d% of training labels wrong", out)
    for fragment in (
        f"run directory  {run}",
        "device         cpu (1 CPU threads), precision fp32",
        "data           1100 training, 100 meta, 20 test images",
        "schedule       4 iterations (2 epochs of 2), lr 0.1 throughout (epochs 80, 100: after the dry run's end);"
        " evaluation every 2 iterations",
    ):
        assert fragment in out, fragment
    evals = lines_of(out, "eval  ")
    records = metrics(run)
    assert [e.split()[2] for e in evals] == ["2/4", "4/4"]  # one line per evaluation, nothing else
    for line, record in zip(evals, records, strict=True):
        for key in ("ep", "lr", "loss", "meta", "w_clean", "w_noisy", "test_loss", "acc", "best", "elapsed", "eta"):
            assert f"  {key} " in line, key
        assert f"acc {record['test_acc']:.2f}" in line and f"test_loss {record['test_loss']:.4f}" in line
    assert "\r" not in out + result.stderr  # not a terminal: no bar redraws
    results = json.load(open(run / "results.json"))
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"finished: best test accuracy {results['best_test_acc']:.2f}%")
    assert last.endswith(f"last {results['last_test_acc']:.2f}%; results in {run / 'results.json'}")
    log = (run / "train.log").read_text().splitlines()
    assert [line for line in log if not line.startswith("----")] == out.strip().splitlines()


def test_print_freq_prints_the_training_losses_every_n_iterations(capsys, cifar10_dir, tmp_path):
    root, _ = cifar10_dir
    result = run_main(
        capsys, MW, "--dry_run", "--print-freq", "1", "--out", str(tmp_path / "r"), "--data_path", root, *FAST
    )
    assert [line.split()[2] for line in lines_of(result.stdout, "train ")] == ["1/4", "3/4"]  # 2 and 4 evaluate


def test_train_log_keeps_every_session(capsys, cifar10_dir, tmp_path, monkeypatch):
    root, _ = cifar10_dir
    run = tmp_path / "run"
    stop_at(monkeypatch, 6, signal.SIGTERM)
    assert run_main(capsys, MW, "--out", str(run), "--data_path", root, *SHORT).returncode == 128 + signal.SIGTERM
    monkeypatch.undo()
    assert run_main(capsys, MW, "--resume", str(run)).returncode == 0
    log = (run / "train.log").read_text()
    assert log.count("---- ") == 2 and log.count("run directory") == 2 and "resumed        at iteration 6" in log
    assert "stopped by SIGTERM at iteration 6" in log and log.count("finished: best") == 1
    assert [line.split()[2] for line in lines_of(log, "eval  ")] == ["4/14", "8/14", "12/14", "14/14"]


@pytest.fixture(scope="module")
def short_run(cifar10_dir, tmp_path_factory):
    import contextlib
    import io

    from mwnet.engine import launch

    root, _ = cifar10_dir
    run = tmp_path_factory.mktemp("short") / "run"
    with contextlib.redirect_stdout(io.StringIO()):
        assert launch.main(MW, ["--out", str(run), "--data_path", root, "--device", "cpu", *SHORT]) == 0
    return root, run


def test_model_best_holds_the_best_evaluation(capsys, short_run):
    _, run = short_run
    results = json.load(open(run / "results.json"))
    best = torch.load(run / "model_best.pt", weights_only=True)  # plain data: loading runs no code
    assert (best["step"], best["test_acc"]) == (results["best_iteration"], results["best_test_acc"])
    assert best["vnet"] is not None and best["config"]["out"] == str(run)
    record = next(m for m in metrics(run) if m["iteration"] == best["step"])
    before = snapshot(run)
    for target, step, key in ((run / "model_best.pt", best["step"], "best_test_acc"), (run, 14, "last_test_acc")):
        result = run_main(capsys, MW, "--evaluate", str(target))
        assert result.returncode == 0, result.stderr
        assert (
            f"(iteration {step}): " in result.stdout
            and f"test accuracy {results[key]:.2f}% on 20 test images" in result.stdout
        )
    assert (
        f"test loss {record['test_loss']:.4f}" in run_main(capsys, MW, "--evaluate", str(run / "model_best.pt")).stdout
    )
    after = snapshot(run)  # --evaluate writes its samples file, named by the model it read, and nothing else
    added = {k: after.pop(k) for k in set(after) - set(before)}
    assert after == before and sorted(added) == [f"samples-best-it{best['step']}.csv", "samples-it14.csv"]
    assert added["samples-it14.csv"] == before["samples.csv"]  # the final checkpoint is the run's final model


def test_the_meta_chosen_model_is_the_first_of_the_highest_meta_accuracy_and_evaluates_to_its_samples_file(
    capsys, short_run
):
    """model_meta_best.pt: chosen by the meta set's accuracy (no test label), the first evaluation of the highest;
    --evaluate of it writes samples-metabest-it<N>.csv, the model's own ranking."""
    _, run = short_run
    lines = metrics(run)
    accs = [m["meta_acc"] for m in lines]
    assert all(0 <= a <= 100 for a in accs)
    first_best = lines[accs.index(max(accs))]
    chosen = torch.load(run / "model_meta_best.pt", weights_only=True)
    assert (chosen["step"], chosen["meta_acc"], chosen["test_acc"]) == (
        first_best["iteration"],
        first_best["meta_acc"],
        first_best["test_acc"],
    )
    assert run_main(capsys, MW, "--evaluate", str(run / "model_meta_best.pt")).returncode == 0
    rows = read_samples(run / f"samples-metabest-it{chosen['step']}.csv")
    assert len(rows["rank"]) == len(read_samples(run)["rank"]) and all(m == "" for m in rows["mean_loss"])


def test_samples_csv_holds_each_samples_history_for_the_samples_drawn(short_run):
    """A run shorter than a pass without an lr drop: the history's two windows are one, and a sample has one
    exactly where it was drawn, as its epoch weight (every draw lies in the last len(loader) iterations)."""
    _, run = short_run
    rows = read_samples(run)
    assert rows["mean_loss"] == rows["early_loss"] and rows["mean_margin"] == rows["early_margin"]
    drawn = [w != "" for w in rows["epoch_weight"]]
    assert [m != "" for m in rows["mean_loss"]] == drawn == [m != "" for m in rows["mean_margin"]]
    assert 0 < sum(drawn) < len(drawn)


def test_samples_csv_is_sorted_by_the_chosen_signal_and_says_so(capsys, short_run, tmp_path, monkeypatch):
    """The run's file follows samples.ORDER (results.json names the column); another ORDER re-sorts the same rows
    (--evaluate of the final checkpoint, on a copy of the run): the samples drawn by that column, lowest margin
    first, those never drawn after them by their final loss; a best model's file, which has no history, by loss."""
    from mwnet.engine import samples

    _, run = short_run
    with open(run / "samples.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert_in_suspect_order(rows)
    assert json.load(open(run / "results.json"))["samples_sorted_by"] == samples.ORDER
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    default = f"by {suspects.ORDER_WORDS[samples.ORDER]}"  # the run's own file, in the default order
    monkeypatch.setattr(samples, "ORDER", "mean_margin")
    result = run_main(capsys, MW, "--evaluate", str(copy))
    assert result.returncode == 0 and "most suspect first by mean_margin" in result.stdout
    with open(copy / "samples-it14.csv", newline="") as f:
        resorted = list(csv.DictReader(f))
    assert_in_suspect_order(resorted)
    unranked = [sorted(tuple(v for k, v in r.items() if k != "rank") for r in f) for f in (rows, resorted)]
    assert unranked[0] == unranked[1] and [int(r["rank"]) for r in resorted] == list(range(1, len(rows) + 1))
    margins = [float(r["mean_margin"]) for r in resorted if r["mean_margin"]]
    assert margins[0] == min(margins) and resorted[-1]["mean_margin"] == "" and margins != sorted(margins, reverse=True)
    best = run_main(capsys, MW, "--evaluate", str(copy / "model_best.pt"))
    assert best.returncode == 0 and "most suspect first by loss" in best.stdout
    # suspects says the order it finds the file in, and shows the column that sorted it
    for name, order in (("samples-it14.csv", "by the mean margin in training, lowest first"), ("samples.csv", default)):
        assert suspects.main([str(copy / name), "--top", "3", "--no_sheet"]) == 0
        out = capsys.readouterr().out.splitlines()
        assert f"the 3 most suspect ({order}" in out[0] and ("mean_margin" in out[1]) == (name != "samples.csv")
    with open(copy / "samples.csv", newline="") as f:
        lines = f.read().splitlines(keepends=True)
    (copy / "shuffled.csv").write_text(lines[0] + "".join(lines[:0:-1]))  # the rows upside down: no order of its
    assert suspects.main([str(copy / "shuffled.csv"), "--top", "3", "--no_sheet"]) == 0
    assert "its first 3 (the file is in none of samples.csv's orders):" in capsys.readouterr().out


def test_the_history_is_each_samples_mean_loss_and_margin_over_its_draws_and_its_early_ones_across_a_resume():
    """samples.csv's mean_loss, mean_margin, early_loss, early_margin against a plain list of every draw, with a
    checkpoint's state taken and restored halfway; a checkpoint made before the history was kept has none."""
    from mwnet.engine.loop_state import Progress

    n, batch, drop = 23, 5, 9  # the first lr drop at iteration 9
    g = torch.Generator().manual_seed(1)
    progress, draws = Progress.new(n, "cpu", 5, batch), []
    for step in range(20):
        idx = torch.randperm(n, generator=g)[:batch]
        losses, margins = torch.rand(batch, generator=g), torch.randn(batch, generator=g)
        draws.append((step, idx, losses, margins))
        progress.record(step, idx, losses, torch.ones(batch), margins, early=step < drop)
        if step == 11:
            progress = Progress.from_state(progress.state_dict(), "cpu", 5, batch)
    means = progress.history_means()
    for name, column, last in (("mean", 2, 20), ("early", 2, drop), ("mean", 3, 20), ("early", 3, drop)):
        want = np.full(n, np.nan)
        for i in range(n):
            got = [float(d[column][k]) for d in draws[:last] for k in range(batch) if int(d[1][k]) == i]
            want[i] = sum(got) / len(got) if got else np.nan
        what = "loss" if column == 2 else "margin"
        # float64 sums of at most 20 values under 4, in another order: they differ by rounding alone
        assert np.allclose(means[f"{name}_{what}"], want, rtol=1e-14, atol=20 * 4 * 2.3e-16, equal_nan=True)
    assert np.isnan(means["early_loss"]).sum() > np.isnan(means["mean_loss"]).sum()  # fewer drawn before the drop
    old = {k: v for k, v in progress.state_dict().items() if k != "history"}
    assert Progress.from_state(old, "cpu", 5, batch).history_means() is None


def test_the_margin_is_the_given_labels_logit_less_the_largest_other():
    from mwnet.method.meta_step import margins

    logits = torch.tensor([[2.0, 1.0, -1.0], [0.5, 3.0, 3.0], [1.0, 1.0, 0.0]])
    targets = torch.tensor([0, 1, 2])
    # by hand: 2 - 1; 3 - 3 (a tie with another class); 0 - 1
    assert margins(logits, targets).tolist() == [1.0, 0.0, -1.0]


@pytest.mark.parametrize("sampling", ["epoch", "random"])
def test_the_epoch_weight_is_the_mean_over_the_last_epochs_iterations_across_a_resume(sampling):
    """samples.csv's epoch_weight: each sample's mean weight over the last len(loader) iterations, against a
    plain list of every draw; a checkpoint's state taken and restored halfway, and one made before it was kept."""
    from mwnet.engine.loop_state import Progress

    n, batch, iterations = 23, 5, 17  # 5 batches a pass (the last of 3); 17 iterations: the window wraps
    rows = -(-n // batch)
    g = torch.Generator().manual_seed(0)
    progress, draws = Progress.new(n, "cpu", rows, batch), []
    perm = None
    for step in range(iterations):
        if sampling == "epoch":
            if step % rows == 0:
                perm = torch.randperm(n, generator=g)
            idx = perm[(step % rows) * batch : (step % rows + 1) * batch]
        else:
            idx = torch.randperm(n, generator=g)[:batch]
        weights = torch.rand(len(idx), generator=g)
        draws.append((idx, weights))
        progress.record(step, idx, torch.rand(len(idx), generator=g), weights)
        if step == 8:
            progress = Progress.from_state(progress.state_dict(), "cpu", rows, batch)
        if sampling == "epoch" and step + 1 == 3 * rows:  # at a pass's end: each sample's one weight in it, its last
            assert np.array_equal(progress.epoch_weight(), progress.last_weight.double().numpy())
    want = np.full(n, np.nan)
    for i in range(n):
        got = [float(w[k]) for idx, w in draws[-rows:] for k in range(len(idx)) if int(idx[k]) == i]
        if got:
            want[i] = sum(got) / len(got)
    # both in float64 from the same float32 weights, means of a few: they can differ by rounding alone
    assert np.allclose(progress.epoch_weight(), want, rtol=1e-15, atol=0, equal_nan=True)
    assert 0 < np.isnan(want).sum() < n  # past a pass's end, either sampling: some drawn twice, some not at all
    old = {k: v for k, v in progress.state_dict().items() if not k.startswith("recent")}
    assert np.isnan(Progress.from_state(old, "cpu", rows, batch).epoch_weight()).all()


def test_evaluate_on_a_checkpoint_without_last_epoch_weights_or_with_damaged_ones(capsys, short_run, tmp_path):
    """A checkpoint made before the last epoch's weights were kept: its samples file, those cells empty. One
    whose weights point past the training set: one line, nothing written."""
    _, run = short_run
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    state = torch.load(copy / "checkpoint.pt", weights_only=False)
    old = {**state, "progress": {k: v for k, v in state["progress"].items() if not k.startswith("recent")}}
    torch.save(old, copy / "checkpoint.pt")
    result = run_main(capsys, MW, "--evaluate", str(copy))
    assert result.returncode == 0, result.stderr
    with open(copy / "samples-it14.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(run / "samples.csv", newline="") as f:
        want = list(csv.DictReader(f))
    assert all(r["epoch_weight"] == "" for r in rows) and all(r["weight"] != "" for r in rows)
    assert [{**r, "epoch_weight": ""} for r in want] == rows
    (copy / "samples-it14.csv").unlink()
    state["progress"]["recent_index"][0, 0] = len(want)
    torch.save(state, copy / "checkpoint.pt")
    before = snapshot(copy)
    result = run_main(capsys, MW, "--evaluate", str(copy))
    assert_one_line_error(result, "its training weights do not fit the training set; the run directory is damaged")
    assert snapshot(copy) == before


def test_a_run_of_a_builtin_dataset_ranks_its_samples_with_its_splits_labels(capsys, short_run, tmp_path):
    _, run = short_run
    split, kept = np.load(run / "split.npz"), np.load(run / "weights.npz")
    with open(run / "samples.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(int(r["index"]) for r in rows) == sorted(split["train_idx"].tolist())  # each sample once
    where = {int(i): p for p, i in enumerate(split["train_idx"])}
    for r in rows:
        p = where[int(r["index"])]
        noisy, clean = int(split["noisy_labels"][p]), int(split["clean_labels"][p])
        assert (int(r["given_label"]), int(r["clean_label"]), r["path"]) == (noisy, clean, "")
        assert r["corrupted"] == str(int(noisy != clean))
        last = float(kept["weight"][p])  # 14 iterations, less than a pass: its one weight, or NaN: never drawn
        assert (
            r["epoch_weight"] == "" if np.isnan(last) else abs(float(r["epoch_weight"]) - last) <= 1e-5 * max(1, last)
        )
    assert_in_suspect_order(rows)
    assert 0 < sum(r["epoch_weight"] == "" for r in rows) < len(rows)
    capsys.readouterr()
    assert suspects.main([str(run), "--top", "3", "--out", str(tmp_path / "sheet.png")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in out[2:5]] == [r["index"] for r in rows[:3]]  # no path: the index
    assert out[5].startswith("corrupted: ") and (tmp_path / "sheet.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_writes_no_samples_outside_a_run_directory(capsys, short_run, tmp_path):
    _, run = short_run
    shutil.copy(run / "model_best.pt", tmp_path / "model_best.pt")
    before = snapshot(tmp_path)
    result = run_main(capsys, MW, "--evaluate", str(tmp_path / "model_best.pt"))
    assert result.returncode == 0 and "test accuracy" in result.stdout
    assert "not written" in result.stderr and "is not a run directory of this project" in result.stderr
    assert snapshot(tmp_path) == before


ROW = ",".join(["1", "0", "", "0", "a", "0", "a", "1", "0", "1", "1"] + [""] * (len(SAMPLE_COLUMNS) - 11)) + "\n"


@pytest.mark.parametrize(
    "content, fragment",
    [
        (None, "does not exist; a run writes it when it finishes"),
        ("rank,index\n1,2\n", "is not a samples file of this project"),
        (b"\xff\xfe" * 50, "is not a readable CSV"),
        (",".join(SAMPLE_COLUMNS) + "\n", "no sample; the file is damaged"),
        (",".join(SAMPLE_COLUMNS) + "\n" + ROW * 30 + "2,1\n", "line 32 has another number"),
    ],
)
def test_suspects_of_a_missing_or_damaged_samples_file_is_one_line(capsys, tmp_path, content, fragment):
    if content is not None:
        (tmp_path / "samples.csv").write_bytes(content if isinstance(content, bytes) else content.encode())
    capsys.readouterr()
    assert suspects.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0] and err[0].startswith("suspects: error: ")


def test_evaluate_refuses_changed_flags_and_missing_files(capsys, short_run, tmp_path):
    root, run = short_run
    result = run_main(capsys, MW, "--evaluate", str(run), "--lr", "0.3", "--data_path", root)
    assert_one_line_error(result, "was made with --lr 0.1, not --lr 0.3")
    assert_one_line_error(run_main(capsys, MW, "--evaluate", str(tmp_path / "none.pt")), "no such checkpoint")


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard is not installed")
def test_tensorboard_events(capsys, cifar10_dir, tmp_path):
    root, _ = cifar10_dir
    run = tmp_path / "run"
    assert (
        run_main(capsys, MW, "--dry_run", "--tensorboard", "--out", str(run), "--data_path", root, *FAST).returncode
        == 0
    )
    events = os.listdir(run / "tb")
    assert events and events[0].startswith("events.out.tfevents") and os.path.getsize(run / "tb" / events[0]) > 1000
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"), size_guidance={"histograms": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"test_acc", "train_loss", "meta_loss", "vnet/V(loss=0)", "vnet/V(loss=10)"} <= set(tags["scalars"])
    assert {"weights/clean", "weights/noisy"} <= set(tags["histograms"])
    assert [e.value for e in acc.Scalars("test_acc")] == [m["test_acc"] for m in metrics(run)]


def test_on_a_terminal_a_bar_shows_epoch_lr_accuracy_and_best(capsys, tmp_path):
    report = Reporter(tmp_path / "train.log", terminal=True)
    report.start(total=3, initial=0, desc="mwnet cifar10")
    report.advance(0.5, 0.1, None, None)
    report.line("eval  it 1/3")
    report.advance(1.0, 0.01, 55.5, 60.25)
    report.close()
    err = capsys.readouterr().err
    assert "mwnet cifar10" in err and "ep 1.00 lr 0.01 acc 55.50 best 60.25" in err
    assert (tmp_path / "train.log").read_text().splitlines()[1:] == ["eval  it 1/3"]


def test_the_readme_snippet_loads_a_runs_model_and_weighting_function(short_run, capsys):
    """The analysis snippet of docs/usage.md ("Run files"), run as a user would paste it, on a real run."""
    _, run = short_run
    readme = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "usage.md")).read()
    code = readme.split("A run's model and weighting function, for analysis:\n\n```python\n")[1].split("```")[0]
    exec(code.replace("runs/fm-u60-mwnet", str(run)), {})
    step, acc, *_ = capsys.readouterr().out.split()
    best = torch.load(run / "model_best.pt", weights_only=True)
    assert (int(step), float(acc)) == (best["step"], best["test_acc"])


def test_off_a_terminal_a_progress_line_comes_at_least_every_minute(capsys, cifar10_dir, tmp_path, monkeypatch):
    """SLURM, nohup, `> log`: no bar, so a plain line with the losses and the ETA whenever PROGRESS_SECONDS (a
    minute) passed without a line; here a minute passes between any two iterations."""
    root, _ = cifar10_dir
    monkeypatch.setattr(Reporter, "PROGRESS_SECONDS", 0)
    flags = [*SHORT, "--arch", "resnet32"]  # whose losses here stay below 10, as the pattern below reads them
    result = run_main(capsys, MW, "--out", str(tmp_path / "run"), "--data_path", root, *flags)
    assert result.returncode == 0, result.stderr
    progress = lines_of(result.stdout, "train it ")
    assert [line.split()[2] for line in progress] == [f"{i}/14" for i in (1, 2, 3, 5, 6, 7, 9, 10, 11, 13)]
    assert all(re.search(r"  loss \d\.\d{4}  meta \d\.\d{4}  .*  eta \d+:\d\d:\d\d$", line) for line in progress)
    assert progress == lines_of((tmp_path / "run" / "train.log").read_text(), "train it ")
    monkeypatch.setattr(Reporter, "PROGRESS_SECONDS", 60)  # the default: a run of seconds prints none
    result = run_main(capsys, MW, "--out", str(tmp_path / "quick"), "--data_path", root, *FAST, "--dry_run")
    assert not lines_of(result.stdout, "train it ")
