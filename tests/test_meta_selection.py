"""--meta_source selected: a meta set chosen from the noisy training data after a warm-up. It reads no clean label,
resumes as the uninterrupted run after a signal or a crash, is refused in one line where it cannot select, and
its selection is the lowest-loss images of each class by an independent reference (a sort per class)."""

import dataclasses
import json
import signal

import numpy as np
import pytest
import torch
from conftest import MW, SHORT, assert_one_line_error, crash_at, metrics, run_main, stop_at

from mwnet.engine import launch, meta_selection, training

# SHORT on the 1,200 images, none taken out: 15 iterations (75 an epoch), plain training for 4, the selection, then
# MW-Net; evaluations at 4, 8, 12, 15.
SELECTED = [*SHORT, "--meta_source", "selected", "--warmup", "0.06"]


@pytest.fixture(scope="module")
def whole(cifar10_dir, tmp_path_factory):
    import contextlib
    import io

    root, _ = cifar10_dir
    out = tmp_path_factory.mktemp("selected") / "whole"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert launch.main(MW, ["--out", str(out), "--data_path", root, "--device", "cpu", *SELECTED]) == 0
    return root, out


def same_training(a, b, reported=("weight_clean", "weight_noisy", "loss_auroc", "weight_auroc")):
    """The same run but for what is computed from the clean labels for the record (`reported`, the purity)."""
    assert metrics(a, drop=("elapsed", *reported)) == metrics(b, drop=("elapsed", *reported))
    for key in ("loss", "weight"):
        np.testing.assert_array_equal(np.load(a / "weights.npz")[key], np.load(b / "weights.npz")[key])
    sa, sb = (json.load(open(d / "meta_selection.json")) for d in (a, b))
    assert sa["positions"] == sb["positions"] and sa["iteration"] == sb["iteration"] == 4
    best_a, best_b = (torch.load(d / "model_best.pt", weights_only=True)["model"] for d in (a, b))
    assert all(torch.equal(best_a[k], best_b[k]) for k in best_a)
    return sa, sb


def test_the_selection_is_the_lowest_losses_of_each_class_and_stays_in_the_training_set(whole):
    _, run = whole
    record = json.load(open(run / "meta_selection.json"))
    split = np.load(run / "split.npz")
    assert len(split["meta_idx"]) == 0 and len(split["train_idx"]) == 1200  # the split took no image out
    positions = np.array(record["positions"])
    np.testing.assert_array_equal(split["train_idx"][positions], record["indices"])
    noisy, clean = split["noisy_labels"], split["clean_labels"]
    assert np.bincount(noisy[positions], minlength=10).tolist() == [10] * 10
    assert record["purity"] == pytest.approx(np.mean(noisy[positions] == clean[positions]))
    assert json.load(open(run / "results.json"))["meta_selection"]["purity"] == record["purity"]
    first = metrics(run)
    assert first[0]["meta_loss"] is None and first[1]["meta_loss"] is not None  # plain warm-up, then MW-Net
    # the reference: for each class, a stable sort of the losses (numpy's, not the code's lexsort)
    losses = np.random.default_rng(0).random(300).round(2)  # ties, broken by position
    labels = np.random.default_rng(1).integers(0, 3, 300)
    expected = np.sort(
        np.concatenate(
            [np.flatnonzero(labels == c)[np.argsort(losses[labels == c], kind="stable")[:7]] for c in range(3)]
        )
    )
    np.testing.assert_array_equal(meta_selection.lowest_per_class(losses, labels, 3, 7), expected)


def test_no_clean_label_is_read(capsys, whole, tmp_path, monkeypatch):
    """The clean labels in memory replaced by garbage: the same selection, losses, weights and model; only what is
    measured from them for the record (purity, the clean and noisy samples' mean weights) differs."""
    root, run = whole
    build = launch.build_data

    def garbage(args, device, seeds):
        data = build(args, device, seeds)
        clean = np.random.default_rng(7).integers(0, 10, len(data.clean_labels))
        is_noisy = torch.as_tensor(clean != data.noisy_labels)
        return dataclasses.replace(data, clean_labels=clean, is_noisy=is_noisy, is_clean=~is_noisy)

    monkeypatch.setattr(launch, "build_data", garbage)
    out = tmp_path / "garbage"
    assert run_main(capsys, MW, "--out", str(out), "--data_path", root, *SELECTED).returncode == 0
    sa, sb = same_training(run, out)
    assert sa["purity"] != sb["purity"]


@pytest.mark.parametrize("at", [2, 6])
def test_a_signal_before_or_after_the_selection_then_resume_ends_as_the_whole_run(
    capsys, whole, tmp_path, monkeypatch, at
):
    root, run = whole
    out = tmp_path / "run"
    stop_at(monkeypatch, at, signal.SIGTERM)
    result = run_main(capsys, MW, "--out", str(out), "--data_path", root, *SELECTED)
    assert result.returncode == 128 + signal.SIGTERM
    assert (out / "meta_selection.json").exists() == (at > 4)
    monkeypatch.undo()
    assert run_main(capsys, MW, "--resume", str(out)).returncode == 0
    same_training(run, out, reported=())


def test_a_crash_after_the_selection_resumes_from_the_checkpoint_that_holds_it(capsys, whole, tmp_path, monkeypatch):
    """Like kill -9: the process ends without a word after the selection; the checkpoint written with the
    selection holds it, and resume goes on with the same meta set."""
    root, run = whole
    original = crash_at(monkeypatch, 7)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="a crash"):
        run_main(capsys, MW, "--out", str(out), "--data_path", root, *SELECTED, "--checkpoint_every", "60")
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["progress"]["step"] == 4 and state["meta_selection"]["iteration"] == 4
    monkeypatch.setattr(training, "one_step", original)
    assert run_main(capsys, MW, "--resume", str(out)).returncode == 0
    same_training(run, out, reported=())


@pytest.mark.parametrize(
    "flags,fragment",
    [
        (["--num_meta", "1300"], "takes 130 training images of each class by their noisy labels, but class"),
        (["--method", "erm"], "--meta_source selected picks a meta set for --method mwnet or l2rw"),
        (["--warmup", "1"], "--warmup 1 epochs is 75 of the run's 15 iterations"),
        (["--num_meta", "0"], "--meta_source selected needs --num_meta > 0"),
    ],
)
def test_where_it_cannot_select_it_says_so_in_one_line(capsys, cifar10_dir, tmp_path, flags, fragment):
    root, _ = cifar10_dir
    result = run_main(capsys, MW, "--out", str(tmp_path / "run"), "--data_path", root, *SELECTED, *flags)
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "run").exists()
