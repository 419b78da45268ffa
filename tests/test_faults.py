"""Faults and mistakes that once ended in a traceback, a wrong result or a lost file: each now ends with one line
saying what is wrong and what to do, its exit code, and nothing of the user's touched."""

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import (
    CPU_ENV,
    FAST,
    MW,
    ROOT,
    SHORT,
    assert_one_line_error,
    default_sigint,
    metrics,
    one_thread,
    run_main,
    snapshot,
    stop_at,
    write_cifar,
)

from mwnet.tools import runner, summarize


@pytest.fixture(scope="module")
def stopped_run(cifar10_dir, tmp_path_factory):
    """A short run stopped by SIGUSR1 at iteration 6 (checkpoint there), and the same run uninterrupted."""
    import contextlib
    import io

    from mwnet.engine import launch

    root, _ = cifar10_dir
    base = tmp_path_factory.mktemp("faults")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), one_thread():
        assert launch.main(MW, ["--out", str(base / "whole"), "--data_path", root, "--device", "cpu", *SHORT]) == 0
        with pytest.MonkeyPatch.context() as mp:
            stop_at(mp, 6)
            flags = ["--out", str(base / "stopped"), "--data_path", root, "--device", "cpu", *SHORT]
            assert launch.main(MW, flags) == 128 + signal.SIGUSR1
    return root, base


@pytest.fixture
def stopped(stopped_run, tmp_path):
    root, base = stopped_run
    shutil.copytree(base / "stopped", tmp_path / "run")
    return root, base / "whole", tmp_path / "run"


def test_a_users_own_folder_is_never_written_into(capsys, cifar10_dir, tmp_path):
    root, _ = cifar10_dir
    mine = tmp_path / "mine"
    (mine / "tb").mkdir(parents=True)
    (mine / "tb" / "events.out.tfevents.1").write_bytes(b"events")
    (mine / "config.json").write_text('{"my": "settings"}')
    (mine / "notes.txt").write_text("notes")
    before = snapshot(mine)
    for args in (["--out", str(mine), "--method", "erm"], ["--resume", str(mine)]):
        result = run_main(capsys, MW, "--dry_run", "--data_path", root, *FAST, *args)
        assert_one_line_error(result, str(mine))
        assert "did not write" in result.stderr or "not a run directory of this project" in result.stderr
    assert snapshot(mine) == before and sorted(os.listdir(mine)) == ["config.json", "notes.txt", "tb"]
    task = runner.plan_task(shlex.join([sys.executable, os.path.join(ROOT, MW), "--out", str(mine)]))
    assert task.action == "refused" and "did not write" in task.reason


def test_resume_refuses_other_data_unless_told(capsys, stopped, tmp_path):
    root, whole, run = stopped
    other = tmp_path / "other"
    write_cifar(str(other), "cifar10", per_class=120, seed=5)  # the same shapes, other images and labels
    before = snapshot(run)
    result = run_main(capsys, MW, "--resume", str(run), "--data_path", str(other))
    assert_one_line_error(result, f"the data under --data_path {other} is not the data {run} started with")
    assert "--accept_other_data" in result.stderr and snapshot(run) == before
    result = run_main(capsys, MW, "--resume", str(run), "--data_path", root)  # its own data: exact as ever
    assert result.returncode == 0 and metrics(run) == metrics(whole)


def test_resume_with_other_data_when_told(capsys, stopped, tmp_path):
    _, _, run = stopped
    other = tmp_path / "other"
    write_cifar(str(other), "cifar10", per_class=120, seed=5)
    result = run_main(capsys, MW, "--resume", str(run), "--data_path", str(other), "--accept_other_data")
    assert result.returncode == 0, result.stderr


def test_cifar100_without_coarse_labels_is_refused(capsys, tmp_path):
    import pickle

    write_cifar(str(tmp_path), "cifar100", per_class=12)
    path = tmp_path / "cifar-100-python" / "train"
    entry = pickle.load(open(path, "rb"))
    del entry["coarse_labels"]
    pickle.dump(entry, open(path, "wb"), protocol=2)
    args = ["--dataset", "cifar100", "-ctype", "hierarchical", "--num_meta", "100", "--out", str(tmp_path / "run")]
    result = run_main(capsys, MW, "--data_path", str(tmp_path), *args)
    assert_one_line_error(result, f"{path} is corrupt", "coarse labels")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("gpus,fragment", [("abc", "'abc' is neither a GPU id"), ("cpu,99", "GPU 99 is not visible")])
def test_the_runner_refuses_slots_that_are_not_gpus(tmp_path, capsys, gpus, fragment):
    listing = tmp_path / "commands.txt"
    listing.write_text(shlex.join([sys.executable, os.path.join(ROOT, MW), "--out", str(tmp_path / "r")]) + "\n")
    assert runner.main([str(listing), "--gpus", gpus]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0] and not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--epochs", "1e308", "--eval_every", "0.001"], "more than 1e+09 iterations"),
        (["--lr", "1e308"], "--lr 1e+308 is beyond float32's range"),
        (["--weight-decay", "5e38"], "--weight-decay 5e+38 is beyond float32's range"),
        (["--vnet_lr", "-1e-3"], "--vnet_lr must not be negative, got -0.001"),
        (["--lr", "-1e-3"], "--lr must be positive, got -0.001"),
    ],
)
def test_values_that_parse_but_cannot_be_computed_with(capsys, cifar10_dir, tmp_path, args, fragment):
    root, _ = cifar10_dir
    result = run_main(capsys, MW, "--out", str(tmp_path / "run"), "--data_path", root, *FAST, *args)
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["config.json", "results.json"])
def test_run_files_holding_a_json_list(capsys, stopped, name):
    _, _, run = stopped
    (run / name).write_text("[]")
    before = snapshot(run)
    assert_one_line_error(run_main(capsys, MW, "--resume", str(run)), f"{run / name} holds a JSON list, not an object")
    assert snapshot(run) == before


def fake_table_run(path, seed, best):
    from test_reproduce import fake_run, flip_flags

    fake_run(path, best, best, flip_flags("0.2", seed))


def test_summarize_names_damaged_runs_and_makes_the_rest(tmp_path, capsys):
    cell = tmp_path / "flip_resnet32" / "cifar10" / "flip2_p0.2" / "mwnet"
    for seed, best in ((1, 90.0), (2, 91.0), (3, 10.0), (4, 10.0)):
        fake_table_run(cell / f"seed{seed}", seed, best)
    (cell / "seed3" / "results.json").write_text("[]")
    (cell / "seed4" / "metrics.jsonl").write_text("not json\n" + (cell / "seed4" / "metrics.jsonl").read_text())
    assert summarize.main(["--runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "best 90.50 ± 0.71" in out and "(n=2)" in out
    assert f"- {cell / 'seed3'}: unreadable: {cell / 'seed3' / 'results.json'} holds a JSON list" in out
    assert f"- {cell / 'seed4'}: unreadable: {cell / 'seed4' / 'metrics.jsonl'}: line 1 is not JSON" in out


def test_summarize_csv_into_a_missing_folder(tmp_path, capsys):
    fake_table_run(tmp_path / "flip_resnet32" / "cifar10" / "flip2_p0.2" / "mwnet" / "seed1", 1, 90.0)
    assert summarize.main(["--runs", str(tmp_path), "--csv", str(tmp_path / "none" / "s.csv")]) == 2
    captured = capsys.readouterr()
    assert (
        captured.out == "" and len(captured.err.strip().splitlines()) == 1 and "folder does not exist" in captured.err
    )


def test_runner_slurm_into_a_missing_folder(tmp_path, capsys):
    listing = tmp_path / "commands.txt"
    listing.write_text(shlex.join([sys.executable, os.path.join(ROOT, MW), "--out", str(tmp_path / "r")]) + "\n")
    assert runner.main([str(listing), "--slurm", str(tmp_path / "none" / "jobs.sbatch")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--slurm" in err[0] and "folder does not exist" in err[0]


def test_ctrl_c_while_starting_is_one_line(tmp_path):
    """A Ctrl-C while torch loads (the first seconds): here torch is a stand-in that announces itself and waits."""
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        f"import time\nopen({str(tmp_path / 'loading')!r}, 'w').close()\ntime.sleep(60)\n"
    )
    env = {**CPU_ENV, "PYTHONPATH": os.pathsep.join([str(tmp_path / "fake"), ROOT])}
    for cmd in ([MW, "--help"], ["-m", "mwnet", "MW-Net.py", "--help"]):
        (tmp_path / "loading").unlink(missing_ok=True)
        proc = subprocess.Popen(
            [sys.executable, *cmd], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint
        )
        deadline = time.time() + 60
        while not (tmp_path / "loading").exists() and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_resume_of_a_foreign_folder_and_of_a_best_model(capsys, stopped, tmp_path):
    _, _, run = stopped
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text('{"lr": 0.1}')
    result = run_main(capsys, MW, "--resume", str(foreign))
    assert_one_line_error(result, f"{foreign} is not a run directory of this project")
    result = run_main(capsys, MW, "--resume", str(run / "model_best.pt"))
    assert_one_line_error(result, "resume takes a run directory or its checkpoint.pt", "--evaluate")
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    shutil.copy(run / "model_best.pt", moved / "checkpoint.pt")  # a best model renamed
    result = run_main(capsys, MW, "--resume", str(moved))
    assert_one_line_error(result, "is a best model (model_best.pt), which holds no optimiser or loader state")


def test_paths_with_a_space_stay_one_argument(tmp_path):
    env = {**os.environ, "PRINT": "1", "SEEDS": "1", "DATASETS": "cifar10"}
    env.update(DATA=str(tmp_path / "my data"), RUNS=str(tmp_path / "my runs"))
    proc = subprocess.run(["bash", "scripts/table_flip_resnet32.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    line = proc.stdout.splitlines()[0]
    task = runner.plan_task(line)
    assert task.action == "run" and task.run_dir.startswith(str(tmp_path / "my runs") + "/"), (task.action, task.reason)
    assert str(tmp_path / "my data") in shlex.split(line)


def test_divergence_from_a_momentum_above_one_says_so(capsys, cifar10_dir, tmp_path):
    root, _ = cifar10_dir
    flags = [*SHORT, "--arch", "resnet32"]  # which overflows within the run (SmallCNN's 14 iterations do not)
    result = run_main(capsys, MW, "--momentum", "5", "--out", str(tmp_path / "r"), "--data_path", root, *flags)
    assert_one_line_error(result, "diverged", "--momentum 5 is 1 or more", code=3)


def test_a_lost_config_is_restored_from_the_checkpoint(capsys, stopped):
    _, whole, run = stopped
    written = json.load(open(run / "config.json"))
    (run / "config.json").unlink()
    result = run_main(capsys, MW, "--resume", str(run))
    assert result.returncode == 0, result.stderr
    assert metrics(run) == metrics(whole)
    restored = json.load(open(run / "config.json"))
    assert {k: v for k, v in restored.items() if k != "environment"} == {
        k: v for k, v in written.items() if k != "environment"
    }
