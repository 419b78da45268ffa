"""The run directory: one owner, resume by directory, exact continuation after any stop, divergence, faults.

Each mistake or fault ends with its exit code, one line on stderr and no traceback, and the files that
existed before are byte-identical after (snapshot).
"""

import contextlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import (
    BUSY,
    CPU_ENV,
    FAST,
    MW,
    ROOT,
    SHORT,
    WRN,
    assert_one_line_error,
    crash_at,
    metrics,
    one_thread,
    run_main,
    snapshot,
    start_cli,
    stop_at,
    wait_for_line,
)

from mwnet.engine import launch, training
from mwnet.engine.options import parse_args
from mwnet.errors import UserError
from mwnet.runs import atomic, run_files


def quiet_main(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), one_thread():
        return launch.main(MW, [*argv, "--device", "cpu"])


@pytest.fixture(scope="module")
def runs(cifar10_dir, tmp_path_factory):
    """An uninterrupted run and the same run stopped by SIGUSR1 at iteration 6 (mid-window)."""
    root, _ = cifar10_dir
    base = tmp_path_factory.mktemp("runs")
    assert quiet_main("--out", str(base / "whole"), "--data_path", root, *SHORT) == 0
    with pytest.MonkeyPatch.context() as mp:
        stop_at(mp, 6)
        assert quiet_main("--out", str(base / "stopped"), "--data_path", root, *SHORT) == 128 + signal.SIGUSR1
    return root, base / "whole", base / "stopped"


@pytest.fixture(scope="module")
def busy_whole(cifar10_dir, tmp_path_factory):
    """The uninterrupted run of ResNet-32, for the tests whose kills and signals must land while it trains."""
    root, _ = cifar10_dir
    base = tmp_path_factory.mktemp("busy")
    assert quiet_main("--out", str(base / "whole"), "--data_path", root, *SHORT, *BUSY) == 0
    return root, base / "whole"


@pytest.fixture
def stopped(runs, tmp_path):
    root, whole, stopped = runs
    shutil.copytree(stopped, tmp_path / "run")
    return root, whole, tmp_path / "run"


def assert_same_run(a, b):
    assert metrics(a) == metrics(b)
    np.testing.assert_array_equal(np.load(a / "weights.npz")["weight"], np.load(b / "weights.npz")["weight"])
    ra, rb = (json.load(open(d / "results.json")) for d in (a, b))
    assert (ra["best_test_acc"], ra["last_test_acc"], ra["status"]) == (
        rb["best_test_acc"],
        rb["last_test_acc"],
        "finished",
    )
    assert not [f for f in os.listdir(a) if f.startswith(run_files.TMP_PREFIX)]


def test_a_signal_checkpoints_its_iteration_and_resume_by_directory_is_exact(capsys, stopped):
    root, whole, run = stopped
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["progress"]["step"] == 6 and state["tally"]["steps"] == 2  # between the evaluations at 4 and 8
    assert [m["iteration"] for m in metrics(run)] == [4] and not (run / "results.json").exists()
    assert "stopped by SIGUSR1 at iteration 6" in (run / "train.log").read_text()
    result = run_main(capsys, MW, "--resume", str(run))  # the run's own flags (--device is free)
    assert result.returncode == 0, result.stderr
    assert_same_run(run, whole)


def test_resume_refuses_another_out_and_touches_neither(capsys, stopped, tmp_path):
    _, _, run = stopped
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    before = snapshot(run), snapshot(other)
    for out in (other, tmp_path / "new"):
        result = run_main(capsys, MW, "--resume", str(run), "--out", str(out))
        assert_one_line_error(result, f"--out {out}", "not the resumed run's directory")
    assert (snapshot(run), snapshot(other)) == before and not (tmp_path / "new").exists()


def test_resume_refuses_changed_flags_naming_every_difference(capsys, stopped):
    root, _, run = stopped
    before = snapshot(run)
    result = run_main(capsys, MW, "--resume", str(run), "--lr", "0.2", "--epochs", "3", "--data_path", root)
    assert_one_line_error(result, "--epochs 0.2, --lr 0.1", "not --epochs 3, --lr 0.2", "leave those flags out")
    assert snapshot(run) == before


def test_starting_over_a_run_is_refused(capsys, runs, stopped):
    root, whole, run = stopped
    for folder, what in ((run, "a stopped run; continue it with --resume"), (whole, "a finished run")):
        before = snapshot(folder)
        result = run_main(capsys, MW, "--out", str(folder), "--data_path", root, *SHORT)
        assert_one_line_error(result, f"{folder} already holds {what}")
        assert snapshot(folder) == before


def test_resuming_a_finished_run_changes_nothing(capsys, runs):
    _, whole, _ = runs
    before = snapshot(whole)
    result = run_main(capsys, MW, "--resume", str(whole))
    assert result.returncode == 0 and "nothing to continue" in result.stdout and snapshot(whole) == before


def test_a_directory_without_checkpoint_holds_no_run(capsys, stopped):
    """Killed before its first checkpoint: the same command (or --resume) starts it afresh, removing what
    the stopped start left, the temporary file of a cut-short write among it."""
    root, whole, run = stopped
    for how in ("same command", "resume"):
        (run / "checkpoint.pt").unlink()
        (run / "results.json").unlink(missing_ok=True)
        (run / ".tmp-abcd-checkpoint.pt").write_bytes(b"half a checkpoint")
        (run / "metrics.jsonl").write_text('{"iteration": 4}\n{"iterat')
        args = ["--resume", str(run)] if how == "resume" else ["--out", str(run), "--data_path", root, *SHORT]
        result = run_main(capsys, MW, *args)
        assert result.returncode == 0, result.stderr
        assert_same_run(run, whole)


def test_resume_of_no_run_and_of_damaged_checkpoints(capsys, stopped, tmp_path):
    _, _, run = stopped
    assert_one_line_error(run_main(capsys, MW, "--resume", str(tmp_path / "none")), "no run there", "without --resume")
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    cases = [
        (
            {k: v for k, v in state.items() if k != "optimizer"},
            "not a complete checkpoint of this project (no 'optimizer')",
        ),
        ({**state, "device_type": "cuda"}, "was made on cuda; resume it with --device cuda"),
        (b"garbage", "and was not loaded"),
    ]
    for content, fragment in cases:
        if isinstance(content, bytes):
            (run / "checkpoint.pt").write_bytes(content)
        else:
            torch.save(content, run / "checkpoint.pt")
        before = snapshot(run)
        assert_one_line_error(run_main(capsys, MW, "--resume", str(run)), fragment)
        assert snapshot(run) == before


def test_torn_or_damaged_metrics_are_rewritten_from_the_checkpoint(capsys, stopped):
    _, whole, run = stopped
    text = (run / "metrics.jsonl").read_text()
    (run / "metrics.jsonl").write_text(text + '{"iteration": 8, "te')  # a kill in mid-write
    assert run_files.read_metrics(run) == [json.loads(text)]  # readers drop the torn line
    (run / "metrics.jsonl").write_text("not json\n" + text + '{"iteration": 8, "te')
    with pytest.raises(UserError, match="line 1 is not JSON"):
        run_files.read_metrics(run)
    result = run_main(capsys, MW, "--resume", str(run))
    assert result.returncode == 0, result.stderr
    assert_same_run(run, whole)


def test_divergence_stops_at_the_next_evaluation_and_keeps_the_last_finite_checkpoint(
    capsys, cifar10_dir, tmp_path, monkeypatch
):
    root, _ = cifar10_dir
    original, count = training.one_step, [0]

    def step(*args, **kwargs):  # the loss of iteration 6 is NaN
        out = original(*args, **kwargs)
        count[0] += 1
        return {**out, "loss": out["loss"] * float("nan")} if count[0] == 6 else out

    monkeypatch.setattr(training, "one_step", step)
    run = tmp_path / "run"
    result = run_main(capsys, MW, "--out", str(run), "--data_path", root, *SHORT)
    assert_one_line_error(result, "diverged between iterations 4 and 8", "checkpoint of iteration 4 is kept", code=3)
    assert torch.load(run / "checkpoint.pt", weights_only=True)["progress"]["step"] == 4
    assert [m["iteration"] for m in metrics(run)] == [4]
    results = json.load(open(run / "results.json"), parse_constant=lambda c: pytest.fail(c))
    assert (
        results["status"] == "diverged"
        and results["diverged_between"] == [4, 8]
        and results["best_test_acc"] is not None
    )
    assert_one_line_error(run_main(capsys, MW, "--resume", str(run)), "diverged", "nothing to continue")


def test_a_real_divergence_writes_no_nan(capsys, cifar10_dir, tmp_path):
    root, _ = cifar10_dir
    run = tmp_path / "run"
    result = run_main(capsys, MW, "--dry_run", "--lr", "1e6", "--out", str(run), "--data_path", root, *FAST)
    assert_one_line_error(result, "diverged between iterations", code=3)
    for name in ("results.json", "config.json"):
        json.load(open(run / name), parse_constant=pytest.fail)
    if (run / "metrics.jsonl").exists():
        metrics(run)  # refuses NaN and Infinity


def test_a_full_disk_at_checkpoint_time_keeps_the_previous_checkpoint(capsys, runs, stopped, monkeypatch):
    root, whole, run = stopped
    real_save, saves = torch.save, [0]

    def full_disk(obj, path, *args, **kwargs):  # what torch reports when the disk fills mid-write
        saves[0] += "checkpoint" in str(path)
        if saves[0] == 2:
            with open(path, "wb") as f:
                f.write(b"partial")
            raise RuntimeError(
                "[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file data/12: file write failed"
            )
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 0))
    checkpoint = (run / "checkpoint.pt").read_bytes()
    result = run_main(capsys, MW, "--resume", str(run))
    assert_one_line_error(result, f"could not write {run / 'checkpoint.pt'}: the disk is full", "--resume")
    assert (
        run / "checkpoint.pt"
    ).read_bytes() != checkpoint  # the first save after resuming (best, then checkpoint) went through
    kept = (run / "checkpoint.pt").read_bytes()
    assert torch.load(run / "checkpoint.pt", weights_only=True)["progress"]["step"] == 8
    assert not [f for f in os.listdir(run) if f.startswith(".tmp-")]
    monkeypatch.undo()
    assert (run / "checkpoint.pt").read_bytes() == kept
    result = run_main(capsys, MW, "--resume", str(run))  # space freed: the run goes on, exactly
    assert result.returncode == 0, result.stderr
    assert_same_run(run, whole)


def test_unwritable_or_file_out_is_one_line(capsys, cifar10_dir, tmp_path, monkeypatch):
    root, _ = cifar10_dir
    (tmp_path / "afile").write_text("x")
    assert_one_line_error(
        run_main(capsys, MW, "--dry_run", "--out", str(tmp_path / "afile"), "--data_path", root), "is a file"
    )
    real_makedirs = os.makedirs

    def denied(path, *args, **kwargs):
        if str(path).startswith(str(tmp_path / "ro")):
            raise PermissionError(13, "Permission denied", str(path))
        return real_makedirs(path, *args, **kwargs)

    monkeypatch.setattr(os, "makedirs", denied)
    result = run_main(capsys, MW, "--dry_run", "--out", str(tmp_path / "ro" / "run"), "--data_path", root, *FAST)
    assert_one_line_error(result, f"cannot write to {tmp_path / 'ro' / 'run'} (Permission denied)")
    monkeypatch.undo()
    if os.geteuid() != 0:  # root writes into a read-only folder anyway
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o500)
        result = run_main(capsys, MW, "--dry_run", "--out", str(tmp_path / "ro" / "run"), "--data_path", root, *FAST)
        assert_one_line_error(result, "Permission denied")


def test_one_process_owns_a_run_directory(capsys, cifar10_dir, tmp_path):
    """A second process on a live run is refused, naming the holder, and writes nothing; kill -9 of the
    holder leaves no stale lock (the OS releases it)."""
    root, _ = cifar10_dir
    run = tmp_path / "run"
    holder = start_cli(MW, "--out", str(run), "--data_path", root, *SHORT, *BUSY, "--epochs", "2", "--print-freq", "1")
    try:
        wait_for_line(holder, "train it 1/")  # 137 iterations to go: it holds the directory throughout
        config, log = (run / "config.json").read_text(), (run / "train.log").read_text()
        for args in (
            ["--out", str(run), "--data_path", root, *SHORT, *BUSY, "--corruption_prob", "0.6"],
            ["--resume", str(run)],
        ):
            result = run_main(capsys, MW, *args)
            assert_one_line_error(result, f"{run} is in use by process {holder.pid}", "wait for it")
        assert (run / "config.json").read_text() == config and (run / "train.log").read_text().startswith(log)
        assert "p=0.6" not in (run / "train.log").read_text()
    finally:
        holder.kill()
        holder.wait()
    with run_files.RunDir(str(run)).owned():  # kill -9 left no stale lock
        pass


def test_kill_9_at_random_moments_then_resume_ends_as_an_uninterrupted_run(busy_whole, tmp_path):
    """Five kill -9 at random moments (starting, training, writing a checkpoint), each followed by the
    command a user would type: the run ends with the uninterrupted run's metrics and no temporary file.
    Every restart also takes the lock the killed process held: kill -9 leaves no stale lock."""
    root, whole = busy_whole
    run = tmp_path / "run"
    fresh = ["--out", str(run), "--data_path", root, *SHORT, *BUSY]
    rng = random.Random(0)
    for _ in range(5):
        proc = start_cli(MW, *(["--resume", str(run)] if (run / "config.json").exists() else fresh))
        time.sleep(rng.uniform(1.0, 5.0))
        proc.kill()
        proc.wait()
    assert quiet_main(*(["--resume", str(run)] if (run / "config.json").exists() else fresh)) == 0
    assert_same_run(run, whole)


def test_sigterm_and_sigint_to_a_real_process_checkpoint_and_resume_exactly(busy_whole, tmp_path):
    root, whole = busy_whole
    run = tmp_path / "run"
    proc = start_cli(MW, "--out", str(run), "--data_path", root, *SHORT, *BUSY, "--print-freq", "1")
    wait_for_line(proc, "train it 5/")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err
    assert "stopped by SIGTERM at iteration" in err and len(err.strip().splitlines()) == 1
    proc = start_cli(MW, "--resume", str(run), "--print-freq", "1")  # the directory, and a free flag
    wait_for_line(proc, "train it 9/")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT and "stopped by SIGINT" in err, err
    assert quiet_main("--resume", str(run)) == 0
    assert_same_run(run, whole)


@pytest.mark.parametrize("at_start", ["default", "ignored (nohup)"])
def test_sighup_stops_a_run_as_sigterm_does_unless_ignored_at_start(capsys, runs, tmp_path, monkeypatch, at_start):
    """A terminal closed or an SSH connection dropped under the run: the checkpoint of that iteration, one line,
    128 + 1; under nohup (SIGHUP ignored when the run starts) the run goes on."""
    root, whole, _ = runs
    run = tmp_path / "run"
    stop_at(monkeypatch, 6, signal.SIGHUP)
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN if at_start != "default" else signal.SIG_DFL)
    try:
        result = run_main(capsys, MW, "--out", str(run), "--data_path", root, *SHORT)
    finally:
        signal.signal(signal.SIGHUP, previous)
    if at_start == "default":
        assert result.returncode == 128 + signal.SIGHUP and "Traceback" not in result.stderr
        assert (
            result.stderr.strip()
            == f"stopped by SIGHUP at iteration 6; checkpoint written; continue with --resume {run}"
        )
        monkeypatch.undo()
        assert run_main(capsys, MW, "--resume", str(run)).returncode == 0
    else:
        assert result.returncode == 0, result.stderr
    assert_same_run(run, whole)


def test_a_closed_output_stops_the_run_at_a_checkpoint_and_resume_is_exact(busy_whole, tmp_path):
    """`MW-Net.py ... 2>&1 | head -1`: the run writes the checkpoint of the iteration at which it finds its output
    closed, says so in train.log in one line, and exits with 128 + SIGPIPE; --resume continues exactly."""
    root, whole = busy_whole
    run = tmp_path / "run"
    cmd = [sys.executable, MW, "--out", str(run), "--data_path", root, *SHORT, *BUSY]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=CPU_ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    proc.stdout.readline()
    proc.stdout.close()
    assert proc.wait(timeout=120) == 128 + signal.SIGPIPE
    log = (run / "train.log").read_text()
    last = log.strip().splitlines()[-1]
    assert "Traceback" not in log and last.startswith("its output was closed at iteration "), log
    step = int(last.split("iteration ")[1].split(";")[0])
    assert torch.load(run / "checkpoint.pt", weights_only=True)["progress"]["step"] == step
    assert last.endswith(f"checkpoint written; continue with --resume {run}")
    assert quiet_main("--resume", str(run)) == 0
    assert_same_run(run, whole)


def test_checkpoint_cadence_over_the_wrn_preset():
    """20,000 iterations at 1/32 s each (a fake clock), evaluated every 100: a checkpoint after 300 s, before each
    lr milestone (the evaluation after which the lr drops) and at the end; 200 with --checkpoint_every 0."""
    plan = training.make_plan(parse_args(WRN, []), batches_per_epoch=490, n_train=49000)

    def written(every):
        out, last = [], 0
        for done in range(plan.eval_period, plan.total + 1, plan.eval_period):
            if training.checkpoint_due(plan, done, (done - last) / 32, every):
                out.append(done)
                last = done
        return out

    assert written(5) == [9600, 18000, 19000, 20000]
    assert plan.lr_at(17999) == pytest.approx(0.1) and plan.lr_at(18000) == pytest.approx(0.01)  # 18000: the last 0.1
    assert len(written(0)) == 200


def test_a_crash_between_checkpoints_loses_only_what_follows_the_last(capsys, cifar10_dir, tmp_path, monkeypatch):
    """The default cadence (no checkpoint by time in seconds): checkpoints before the lr milestone at iteration 10
    (at the evaluation of 8) and at the end. A crash at 13 leaves the checkpoint of 8 and metrics lines up to 12;
    resuming drops the line of 12, computes it again, and ends as the uninterrupted run."""
    root, _ = cifar10_dir
    flags = ["--data_path", root, *SHORT, "--milestones", "0.15", "--checkpoint_every", "60"]
    saved = []
    real_save = run_files.RunDir.save_checkpoint
    monkeypatch.setattr(
        run_files.RunDir,
        "save_checkpoint",
        lambda self, state: (saved.append(state["progress"]["step"]), real_save(self, state)),
    )
    assert run_main(capsys, MW, "--out", str(tmp_path / "whole"), *flags).returncode == 0
    assert saved == [8, 14]
    original = crash_at(monkeypatch, 13)
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="a crash"):
        run_main(capsys, MW, "--out", str(run), *flags)
    assert torch.load(run / "checkpoint.pt", weights_only=True)["progress"]["step"] == 8
    assert [m["iteration"] for m in metrics(run)] == [4, 8, 12]
    monkeypatch.setattr(training, "one_step", original)
    assert run_main(capsys, MW, "--resume", str(run)).returncode == 0
    assert_same_run(run, tmp_path / "whole")


def test_a_read_only_run_directory_writes_nothing_whatever_is_called(tmp_path):
    """torchrun's processes other than 0 hold a ReadOnlyRunDir: every method of a run directory that writes,
    called with the arguments a run passes, leaves a run directory byte-identical, and a fresh folder absent;
    the same calls on a RunDir do write (so that the check can fail)."""
    import inspect

    from mwnet.runs import run_files
    from mwnet.runs.run_files import ReadOnlyRunDir, RunDir

    n = 4
    labels = np.arange(n) % 2
    columns = {c: list(range(1, n + 1)) if c == "rank" else None for c in run_files.SAMPLE_COLUMNS}
    calls = {
        "prepare_fresh": (),
        "remove_temporaries": (),
        "save_checkpoint": ({"x": torch.zeros(2)},),
        "save_best": ({"x": torch.zeros(2)},),
        "append_metrics": ({"step": 1},),
        "rewrite_metrics": ([{"step": 1}],),
        "write_config": ({"seed": 1},),
        "write_results": ({"status": "finished"},),
        "save_split": (np.arange(2), np.arange(n), labels, labels),
        "save_weights": (np.arange(n), labels, labels, np.zeros(n), np.ones(n)),
        "save_samples": (columns,),
        "save_meta_selection": ({"step": 1},),
        "save_weighting_function": ([0.0, 1.0], [1.0, 0.5]),
    }
    writers = {
        name
        for name, f in inspect.getmembers(RunDir, inspect.isfunction)
        if "_out." in inspect.getsource(f) and not name.startswith("_")
    }
    assert writers == set(calls), "a RunDir method that writes has no call here"  # a new one must be added
    existing = tmp_path / "run"
    (existing / "tb").mkdir(parents=True)
    (existing / run_files.MARKER).write_text(run_files.MARKER_TEXT)
    (existing / run_files.METRICS).write_text('{"step": 0}\n')
    (existing / (run_files.TMP_PREFIX + "x")).write_text("left by a kill")
    before = snapshot(str(existing))
    for folder in (existing, tmp_path / "fresh"):
        reader = ReadOnlyRunDir(str(folder))
        with reader.owned():
            reader.claim()
            for name, args in calls.items():
                getattr(reader, name)(*args)
    assert snapshot(str(existing)) == before and (existing / "tb").is_dir() and not (tmp_path / "fresh").exists()
    writer = RunDir(str(tmp_path / "written"))
    with writer.owned():
        for name, args in calls.items():
            getattr(writer, name)(*args)
    assert {run_files.CONFIG, run_files.RESULTS, run_files.SAMPLES, run_files.CHECKPOINT} <= set(
        os.listdir(writer.path)
    )
