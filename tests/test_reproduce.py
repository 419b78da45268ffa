"""From runs to tables and figures: the runner's decisions, the table scripts, summarize.py, plot.py, SLURM."""

import csv
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import (
    BUSY,
    CPU_ENV,
    FAST,
    MW,
    ROOT,
    SHORT,
    default_sigint,
    one_thread,
    run_main,
    snapshot,
    stop_at,
    write_cifar,
    write_fashion,
)

from mwnet.engine.options import parse_args
from mwnet.tools import plot, runner, summarize

FLIP = ["--epochs", "60", "--milestones", "40", "50"]


def fake_run(path, best, last, flags, status="finished", curve=None, weights=(0.9, 0.2)):
    """A run directory as the scripts write it, with the flags' full configuration."""
    os.makedirs(path, exist_ok=True)
    config = {**vars(parse_args(MW, flags)), "vnet_loss_grid": [0.0, 2.5, 5.0], "seeds": [1, 2, 3]}
    json.dump(config, open(os.path.join(path, "config.json"), "w"))
    if status:
        json.dump(
            {"status": status, "best_test_acc": best, "last_test_acc": last},
            open(os.path.join(path, "results.json"), "w"),
        )
    line = {"epoch": 1.0, "test_acc": last, "weight_clean": weights[0], "weight_noisy": weights[1], "vnet_curve": curve}
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        f.write(json.dumps(line) + "\n")


def flip_flags(p, seed=1, method="mwnet", kind="flip2", extra=()):
    return [
        "--dataset",
        "cifar10",
        "--corruption_type",
        kind,
        "--corruption_prob",
        p,
        "--seed",
        str(seed),
        *FLIP,
        "--method",
        method,
        *extra,
    ]


def test_summarize_means_paper_and_missing_cells(tmp_path, capsys):
    cell = tmp_path / "flip_resnet32" / "cifar10" / "flip2_p0.2"
    fake_run(cell / "mwnet" / "seed1", 90.0, 89.0, flip_flags("0.2", 1))
    fake_run(cell / "mwnet" / "seed2", 91.0, 90.0, flip_flags("0.2", 2))
    fake_run(
        cell / "erm_long" / "seed1",
        70.0,
        65.0,
        flip_flags("0.2", 1, "erm", extra=["--epochs", "120", "--milestones", "80", "100"]),
    )
    out_csv = tmp_path / "cells.csv"
    assert summarize.main(["--runs", str(tmp_path), "--csv", str(out_csv), "--weights"]) == 0
    text = capsys.readouterr().out
    assert "### Flip noise (flip2), ResNet-32: cifar10" in text
    assert "best 90.50 ± 0.71, last 89.50 ± 0.71 (n=2); paper 90.33 ± 0.61 (+0.17)" in text
    assert "best 70.00, last 65.00 (n=1); paper 76.83 ± 2.30 (-6.83)" in text
    assert "missing; paper 87.86 ± 0.36" in text  # L2RW at 20 %: no finished seed
    assert "| Plain, same schedule | missing | missing | missing |" in text  # no paper figure for this row
    assert "| MW-Net | missing | clean 0.900 / noisy 0.200 (n=2) | missing |" in text
    rows = list(csv.DictReader(open(out_csv)))
    assert len(rows) == 4 * 3 and {"weight_clean", "weight_noisy", "v_low", "v_high", "conflict"} <= set(rows[0])
    missing = [r for r in rows if r["n"] == "0"]
    assert len(missing) == 10 and all(r["best_mean"] == "" and r["last_mean"] == "" for r in missing)
    hit = next(r for r in rows if r["row"] == "mwnet" and r["setting"] == "0.2")
    assert float(hit["best_mean"]) == 90.5 and float(hit["paper"]) == 90.33 and float(hit["weight_noisy"]) == 0.2


def test_summarize_leaves_out_dry_unfinished_diverged_and_misplaced_runs(tmp_path, capsys):
    cell = tmp_path / "flip_resnet32" / "cifar10" / "flip2_p0.2" / "mwnet"
    fake_run(cell / "seed1", 90.0, 89.0, flip_flags("0.2", 1))
    fake_run(cell / "seed2", 10.0, 10.0, flip_flags("0.2", 2, extra=["--dry_run"]))
    fake_run(cell / "seed3", 50.0, 50.0, flip_flags("0.2", 3), status=None)
    fake_run(cell / "seed4", 20.0, 20.0, flip_flags("0.2", 4), status="diverged")
    fake_run(cell / "seed5", 99.0, 99.0, flip_flags("0.4", 5))  # a 40 % run in the 20 % folder
    assert summarize.main(["--runs", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "best 90.00, last 89.00 (n=1)" in text
    assert "Left out: 1 diverged, 1 dry run, 1 unfinished" in text
    assert "Not in the table: 1 finished runs whose folder or flags are none of its settings and rows" in text
    assert (
        f"- {cell / 'seed5'}: MW-Net.py --method mwnet --dataset cifar10 --corruption_type flip2 --corruption_prob 0.4 --seed 5"
        in text
    )


def test_summarize_reports_a_conflict_instead_of_pooling(tmp_path, capsys):
    cell = tmp_path / "flip_resnet32" / "cifar10" / "flip2_p0.4" / "mwnet"
    fake_run(cell / "seed1", 90.0, 89.0, flip_flags("0.4", 1))
    fake_run(cell / "seed2", 80.0, 79.0, flip_flags("0.4", 2, extra=["--lr", "0.2"]))
    summarize.main(["--runs", str(tmp_path), "--csv", str(tmp_path / "c.csv")])
    text = capsys.readouterr().out
    assert "conflict: 2 configurations (lr 0.1 vs 0.2); paper 87.54" in text and "85.00" not in text
    hit = next(r for r in csv.DictReader(open(tmp_path / "c.csv")) if r["setting"] == "0.4" and r["row"] == "mwnet")
    assert hit["n"] == "0" and hit["best_mean"] == "" and "lr 0.1 vs 0.2" in hit["conflict"]


def test_flip_and_flip2_make_separate_rows(tmp_path, capsys):
    for kind, best in (("flip", 80.0), ("flip2", 90.0)):
        run = tmp_path / "flip_resnet32" / "cifar10" / f"{kind}_p0.4" / "mwnet" / "seed1"
        fake_run(run, best, best, flip_flags("0.4", kind=kind))
    summarize.main(["--runs", str(tmp_path)])
    rows = {line.split(" | ")[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("| MW-Net")}
    assert "best 80.00, last 80.00 (n=1)" in rows["| MW-Net (flip)"]
    assert "best 90.00, last 90.00 (n=1)" in rows["| MW-Net (flip2)"]


def test_summarize_remark_and_no_runs(tmp_path, capsys):
    flags = ["--corruption_type", "unif", "--corruption_prob", "0.4", "--method", "erm"]
    fake_run(tmp_path / "uniform_wrn" / "cifar10" / "unif_p0.4" / "erm" / "seed1", 88.0, 87.0, flags)
    summarize.main(["--runs", str(tmp_path)])
    assert "paper 88.50 (-0.50)" in capsys.readouterr().out  # the authors' figure for MW-Net's schedule
    assert summarize.main(["--runs", str(tmp_path / "empty")]) == 2


def plot_run(path, method, seed=1, shift=0.0, flags=()):
    grid = [i / 10 for i in range(101)]
    curve = [1 / (1 + np.exp(x - 3 - shift)) for x in grid] if method == "mwnet" else None
    fake_run(
        path, 60.0, 60.0, ["--dataset", "fashionmnist", "--method", method, "--seed", str(seed), *flags], curve=curve
    )
    config = json.load(open(path / "config.json"))
    json.dump({**config, "vnet_loss_grid": grid}, open(path / "config.json", "w"))
    with open(path / "metrics.jsonl", "w") as f:
        for i in (1, 2):
            line = {"epoch": i, "test_acc": 50.0 + i + shift, "vnet_curve": curve, "loss_auroc": 0.9 - 0.1 * i}
            f.write(json.dumps(line) + "\n")
    rng = np.random.default_rng(seed)
    weight = rng.random(50) if method == "mwnet" else rng.random(50) / 50
    np.savez(path / "weights.npz", weight=weight, is_noisy=rng.random(50) < 0.4)


def test_plot_writes_every_figure_in_each_format(tmp_path, capsys):
    plot_run(tmp_path / "mwnet" / "seed1", "mwnet", 1)
    plot_run(tmp_path / "mwnet" / "seed2", "mwnet", 2, shift=0.5)
    plot_run(tmp_path / "l2rw" / "seed1", "l2rw")
    plot_run(tmp_path / "erm_long" / "seed1", "erm")
    runs = [str(tmp_path / d) for d in ("mwnet/seed1", "mwnet/seed2", "l2rw/seed1", "erm_long/seed1")]
    assert plot.main([*runs, "--out", str(tmp_path / "fig"), "--format", "png,pdf,svg"]) == 0
    for name in ("weighting_function", "weight_histograms", "test_accuracy", "loss_separation"):
        assert (tmp_path / "fig" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / "fig" / f"{name}.pdf").read_bytes()[:4] == b"%PDF"
        assert b"<svg" in (tmp_path / "fig" / f"{name}.svg").read_bytes()[:500]
    assert plot.main([str(tmp_path / "nothing")]) == 2
    assert plot.main([*runs, "--format", "jpg"]) == 2


def test_plot_series_labels_axes_and_panels(tmp_path):
    plot_run(tmp_path / "a" / "mwnet" / "seed1", "mwnet", 1)
    plot_run(tmp_path / "a" / "mwnet" / "seed2", "mwnet", 2, shift=0.5)
    plot_run(tmp_path / "b" / "mwnet" / "seed1", "mwnet", 1, flags=["--corruption_prob", "0.6"])
    plot_run(tmp_path / "b" / "erm_long" / "seed1", "erm")
    plot_run(tmp_path / "c" / "run", "erm", flags=["--epochs", "3"])
    plot_run(tmp_path / "d" / "l2rw" / "seed1", "l2rw")
    paths = [
        str(tmp_path / p)
        for p in ("a/mwnet/seed1", "a/mwnet/seed2", "b/mwnet/seed1", "b/erm_long/seed1", "c/run", "d/l2rw/seed1")
    ]
    series = plot.make_series(paths)
    labels = sorted(s.label.replace("\xa0", " ") for s in series)  # no-break spaces keep "flag value" together
    assert labels == [  # each curve: its name, and the settings in which the curves plotted differ
        "L2RW, unif 40%, epochs 120",
        "MW-Net, unif 40%, epochs 120",
        "MW-Net, unif 60%, epochs 120",
        "Plain (BaseModel schedule), unif 40%, epochs 120",
        "Plain training, unif 40%, epochs 3",
    ]
    two_seeds = next(s for s in series if s.label.startswith("MW-Net, unif\xa040%"))
    x, mean, low, high = plot.vnet_curves(two_seeds)
    assert len(two_seeds.runs) == 2 and np.all(low < high) and np.all((low <= mean) & (mean <= high))
    with plot.plt.rc_context(plot.STYLE):
        v = plot.plot_weighting_function(series)
        assert v.axes[0].get_ylim() == (0, 1) and len(v.axes[0].collections) == 1  # one band: the two seeds
        hist = plot.plot_weight_histograms(series)
    mw_axes, l2rw_axes = hist.axes[:2], hist.axes[2:]
    assert mw_axes[0].get_shared_y_axes().joined(*mw_axes) and not mw_axes[0].get_shared_x_axes().joined(
        mw_axes[0], l2rw_axes[0]
    )
    assert l2rw_axes[0].get_xlim()[1] < 0.1 and mw_axes[0].get_xlim()[1] >= 1  # L2RW's weights on their own scale
    assert [s.label for s in plot.make_series(paths, labels=["A", "B", "C", "D", "E"])] == ["A", "B", "C", "D", "E"]
    with pytest.raises(plot.UserError, match="2 labels for 5 configurations"):
        plot.make_series(paths, labels=["A", "B"])


def test_under_class_imbalance_the_function_is_drawn_beside_its_start_and_each_class_weight_by_its_size(tmp_path):
    run = tmp_path / "mwnet" / "seed1"
    plot_run(run, "mwnet", flags=["--imb_factor", "10", "--corruption_prob", "0"])
    config = json.load(open(run / "config.json"))
    start = [0.5 - x / 40 for x in config["vnet_loss_grid"]]  # a falling start; the learned curve differs
    json.dump({**config, "vnet_curve_init": start}, open(run / "config.json", "w"))
    labels = np.repeat([0, 1, 2], [30, 15, 5])
    weight = np.where(labels == 2, 0.9, np.where(labels == 1, 0.6, 0.3))
    weight[0] = np.nan  # never drawn: left out of its class's mean
    np.savez(run / "weights.npz", weight=weight, is_noisy=np.zeros(50, bool), noisy_labels=labels)
    series = plot.make_series([str(run)])
    with plot.plt.rc_context(plot.STYLE):
        ax = plot.plot_weighting_function(series).axes[0]
        assert any(np.allclose(line.get_ydata(), start) for line in ax.get_lines())  # where it started, drawn
        line = plot.plot_class_weights(series).axes[0].get_lines()[0]
    assert list(line.get_xdata()) == [30, 15, 5] and np.allclose(line.get_ydata(), [0.3, 0.6, 0.9])
    plot_run(tmp_path / "noise" / "mwnet" / "seed1", "mwnet")  # no imbalance: no such figure
    assert plot.plot_class_weights(plot.make_series([str(tmp_path / "noise" / "mwnet" / "seed1")])) is None


def test_plot_marks_dry_diverged_and_unfinished_runs(tmp_path):
    plot_run(tmp_path / "dry" / "mwnet" / "seed1", "mwnet", flags=["--dry_run"])
    plot_run(tmp_path / "div" / "l2rw" / "seed1", "l2rw")
    results = tmp_path / "div" / "l2rw" / "seed1" / "results.json"
    results.write_text(json.dumps({**json.load(open(results)), "status": "diverged"}))
    plot_run(tmp_path / "part" / "erm_long" / "seed1", "erm")
    (tmp_path / "part" / "erm_long" / "seed1" / "results.json").unlink()
    paths = [str(tmp_path / p) for p in ("dry/mwnet/seed1", "div/l2rw/seed1", "part/erm_long/seed1")]
    labels = [s.label.replace("\xa0", " ") for s in plot.make_series(paths)]
    assert labels == ["MW-Net [dry run]", "L2RW [diverged]", "Plain (BaseModel schedule) [started]"]
    assert [s.label.replace("\xa0", " ") for s in plot.make_series(paths, labels=["a", "b", "c"])] == [
        "a [dry run]",
        "b [diverged]",
        "c [started]",
    ]


def command(out, *flags):
    return shlex.join([sys.executable, os.path.join(ROOT, MW), "--out", str(out), *flags])


def test_the_runner_decides_from_what_each_directory_holds(capsys, cifar10_dir, tmp_path, monkeypatch):
    root, _ = cifar10_dir
    flags = ["--data_path", root, *FAST, "--dry_run", "--device", "cpu"]
    done, stopped, diverged = tmp_path / "done", tmp_path / "stopped", tmp_path / "diverged"
    assert run_main(capsys, MW, "--out", str(done), *flags).returncode == 0
    assert run_main(capsys, MW, "--out", str(diverged), *flags, "--lr", "1e6").returncode == 3
    stop_at(monkeypatch, 3)
    assert run_main(capsys, MW, "--out", str(stopped), *flags).returncode == 128 + signal.SIGUSR1
    before = snapshot(done)
    cases = [
        (command(done, *flags), "done", ""),
        (
            command(done, *flags, "--lr", "0.2"),
            "refused",
            "holds a finished run of another configuration (lr 0.1 vs 0.2)",
        ),
        (command(done, *[f for f in flags if f != "--dry_run"]), "refused", "dry_run True vs False"),
        (command(done, *flags, "--data_path", "elsewhere", "--device", "cuda"), "done", ""),  # free flags
        (command(stopped, *flags), "resume", ""),
        (command(diverged, *flags, "--lr", "1e6"), "diverged", "diverged before"),
        (command(tmp_path / "new", *flags), "run", ""),
        (command(tmp_path / "x", "--lr", "nan"), "refused", "bad flags"),
    ]
    for line, action, reason in cases:
        task = runner.plan_task(line)
        assert (task.action, reason in task.reason) == (action, True), (line, task.action, task.reason)
    assert runner.plan_task(command(stopped, *flags)).words[-2:] == ["--resume", str(stopped)]
    assert snapshot(done) == before


def table(env, **extra):
    env = {**env, **extra}
    proc = subprocess.run(
        ["bash", "scripts/table_flip_resnet32.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_a_dry_table_then_a_short_real_table_runs_every_real_cell(tmp_path, capsys):
    """A dry table, then the real one: the runner plans every real cell as a run (dry runs never count as done),
    skips them once finished and refuses another configuration in their folders. The table's 24 commands run in
    this process: the runner's way of starting and counting runs is tested with torchrun's (test_distributed.py)
    and Ctrl-C's (below). SmallCNN: the runner's decisions are under test, not the classifier."""
    from mwnet.engine import launch

    data, runs = tmp_path / "data", tmp_path / "runs"
    write_cifar(str(data), "cifar10", per_class=120)
    env = dict(
        CPU_ENV, DATA=str(data), RUNS=str(runs), SEEDS="1", DATASETS="cifar10", GPUS="cpu,cpu", PYTHON=sys.executable
    )

    def run_in_process(extra, under, **more):
        code, out = table(env, PRINT="1", EXTRA=extra, **more)
        assert code == 0 and len(out.splitlines()) == 12, out
        for line in out.splitlines():
            task = runner.plan_task(line)
            assert task.action == "run" and task.run_dir.startswith(str(under)), (task.action, task.run_dir)
            at = next(i for i, w in enumerate(task.words) if w.endswith(MW))
            with one_thread():
                assert launch.main(MW, [*task.words[at + 1 :], "--device", "cpu"]) == 0
        capsys.readouterr()

    run_in_process("--batch_size 16 --num_meta 100 --arch smallcnn", runs / "dry", DRY_RUN="1")
    short = "--batch_size 16 --num_meta 100 --arch smallcnn --epochs 0.03 --eval_every 0.03 --milestones 0.02"
    run_in_process(short, runs / "flip_resnet32")  # every real cell planned as a run: the dry runs did not count
    real = sorted(runs.glob("flip_resnet32/cifar10/*/*/seed1/results.json"))
    dry = sorted(runs.glob("dry/flip_resnet32/cifar10/*/*/seed1/results.json"))
    assert len(real) == len(dry) == 12
    assert all(json.load(open(p.parent / "config.json"))["dry_run"] is False for p in real)
    assert all(json.load(open(p))["status"] == "finished" for p in real)
    code, out = table(env, EXTRA=short)
    assert code == 0 and "runner: 12 runs: 12 skipped (done)" in out, out
    before = snapshot(runs / "flip_resnet32")
    code, out = table(env, EXTRA=short + " --lr 0.05")  # another configuration in the same folders
    assert code == 1 and "runner: 12 runs: 12 refused" in out and "(lr 0.1 vs 0.05)" in out, out
    assert snapshot(runs / "flip_resnet32") == before


def test_ctrl_c_stops_the_runner_and_its_runs_cleanly(cifar10_dir, tmp_path):
    root, _ = cifar10_dir
    runs = [tmp_path / "a", tmp_path / "b"]
    listing = tmp_path / "commands.txt"
    listing.write_text("".join(command(r, "--data_path", root, *SHORT, *BUSY, "--epochs", "2") + "\n" for r in runs))
    proc = subprocess.Popen(
        [sys.executable, "scripts/runner.py", str(listing), "--gpus", "cpu,cpu"],
        cwd=ROOT,
        env=CPU_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=default_sigint,
    )
    deadline = time.time() + 120
    while not all((r / "checkpoint.pt").exists() for r in runs) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in out, out
    assert "runner: 2 runs: 2 stopped" in out, out
    for r in runs:
        assert not (r / "results.json").exists() and "stopped by SIGTERM" in (r / "train.log").read_text()


def test_slurm_array_directives_and_its_task(cifar10_dir, tmp_path, monkeypatch, capsys):
    root, _ = cifar10_dir
    listing = tmp_path / "commands.txt"
    flags = ["--data_path", root, *FAST, "--dry_run"]
    listing.write_text(command(tmp_path / "a", *flags) + "\n" + command(tmp_path / "b", *flags, "--lr", "nan") + "\n")
    for var in ("JOB_PARTITION", "JOB_ACCOUNT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("JOB_TIME", "2:00:00")
    sbatch = tmp_path / "jobs.sbatch"
    assert runner.main([str(listing), "--slurm", str(sbatch)]) == 1  # one command refused (bad flag), one written
    text = sbatch.read_text()
    for directive in (
        "--array=0-0%16",
        "--time=2:00:00",
        "--mem=16G",
        "--requeue",
        "--signal=B:USR1@300",
        "--gres=gpu:1",
    ):
        assert f"#SBATCH {directive}" in text, directive
    assert "--partition" not in text and "--account" not in text and "scontrol requeue" in text
    assert f"{sbatch}.commands" in text and os.path.exists(f"{sbatch}.commands")  # the header names a file that exists
    assert subprocess.run(["bash", "-n", str(sbatch)]).returncode == 0
    assert runner.main([str(listing), "--slurm", str(sbatch), "--partition", "gpu", "--account", "lab"]) == 1
    assert "#SBATCH --partition=gpu\n#SBATCH --account=lab\n" in sbatch.read_text()
    task = subprocess.run(
        [sys.executable, "scripts/runner.py", f"{sbatch}.commands", "--task", "0"],
        cwd=ROOT,
        env=CPU_ENV,
        capture_output=True,
        text=True,
    )
    assert task.returncode == 0 and f"task 0: {tmp_path / 'a'}: run" in task.stdout, task.stdout + task.stderr
    assert json.load(open(tmp_path / "a" / "results.json"))["status"] == "finished"  # it became the training process
    assert (
        runner.main([f"{sbatch}.commands", "--task", "0"]) == 0 and ": done" in capsys.readouterr().out
    )  # requeued after the end


@pytest.mark.parametrize(
    "script,runs", [("table_uniform_wrn.sh", 120), ("table_longtail_resnet32.sh", 240), ("table_fashionmnist.sh", 80)]
)
def test_other_table_scripts_print_every_cell(script, runs):
    env = dict(os.environ, PRINT="1", SEEDS="1 2 3 4 5")
    proc = subprocess.run(["bash", f"scripts/{script}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and len(lines) == runs
    assert len({line.split("--out ")[1].split()[0] for line in lines}) == runs  # one directory per run
    if script == "table_longtail_resnet32.sh":  # every row trains the classifier the same way
        assert all("--nesterov true" in line for line in lines)
        assert all("--real_lr_ahead 1 --meta_sampling random" in line for line in lines if "erm_long" not in line)
        mwnet = [line for line in lines if "/mwnet/" in line]
        assert all("--no-detach_vnet_input" in line and "--vnet_lr 1e-5" in line for line in mwnet)


def test_plot_leaves_out_what_it_cannot_draw_and_draws_the_rest(tmp_path, capsys):
    good = tmp_path / "a" / "mwnet" / "seed1"
    plot_run(good, "mwnet")
    started = tmp_path / "b" / "erm" / "seed1"  # config.json written, no evaluation yet
    plot_run(started, "erm")
    (started / "metrics.jsonl").write_text("")
    (started / "results.json").unlink()
    damaged = tmp_path / "c" / "mwnet" / "seed1"  # a truncated weights.npz
    plot_run(damaged, "mwnet", flags=["--corruption_prob", "0.6"])
    (damaged / "weights.npz").write_bytes((damaged / "weights.npz").read_bytes()[:100])
    fig = tmp_path / "fig"
    assert plot.main([str(good), str(started), str(damaged), "--out", str(fig)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"plot: left out {started}: no evaluation yet"
    assert err[1].startswith(f"plot: left out {damaged}: {damaged / 'weights.npz'} is damaged") and len(err) == 2
    assert all((fig / f"{name}.png").exists() for name in ("weighting_function", "weight_histograms", "test_accuracy"))
    (tmp_path / "taken.png").write_bytes(b"mine")
    assert plot.main([str(good), "--out", str(tmp_path / "taken.png")]) == 2
    assert capsys.readouterr().err.strip().endswith("is a file; --out names a folder for the figures")
    assert (tmp_path / "taken.png").read_bytes() == b"mine"


def test_plot_curves_stay_apart_and_legends_leave_the_bars_free(tmp_path):
    """Equal curves (a dry table's two plain rows) differ in line style and marker; the histograms' legend sits
    below the panels, their counts in the titles."""
    for row, method in (("mwnet", "mwnet"), ("l2rw", "l2rw"), ("erm", "erm"), ("erm_long", "erm")):
        flags = ["--epochs", "3"] if row == "erm_long" else []
        plot_run(tmp_path / row / "seed1", method, flags=flags)
    series = plot.make_series([str(tmp_path / r / "seed1") for r in ("mwnet", "l2rw", "erm", "erm_long")])
    with plot.plt.rc_context(plot.STYLE):
        accuracy = plot.plot_test_accuracy(series)
        hist = plot.plot_weight_histograms(series)
    styles = [(line.get_linestyle(), line.get_marker()) for line in accuracy.axes[0].lines]
    assert len(styles) == 4 and len(set(styles)) == 4
    assert all(ax.get_legend() is None for ax in hist.axes) and len(hist.legends) == 1
    assert all("clean" in ax.get_title() and "noisy" in ax.get_title() for ax in hist.axes)


def test_summarize_after_a_dry_table_points_at_the_dry_runs(tmp_path, capsys):
    run = tmp_path / "dry" / "flip_resnet32" / "cifar10" / "flip2_p0.2" / "mwnet" / "seed1"
    fake_run(run, 10.0, 10.0, flip_flags("0.2", extra=["--dry_run"]))
    assert summarize.main(["--runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1 and f"the runs under {tmp_path / 'dry'} are dry runs, which are never results" in err
    )
    assert summarize.main(["--runs", str(tmp_path / "dry")]) == 0
    assert "Left out: 1 dry run" in capsys.readouterr().out


def test_every_finished_run_of_a_table_is_shown_or_named(tmp_path, capsys):
    """The Fashion-MNIST table with FLIP_TYPE=flip after the default one: flip and flip2 settings apart, each
    noise rate apart, in the Markdown and the CSV; a run of a setting the table has no place for is named.
    The table script's commands are run in this process (the runner's way of running them is tested above)."""
    from mwnet.engine import launch

    data, runs = tmp_path / "data", tmp_path / "runs"
    write_fashion(str(data), per_class=30)
    env = dict(CPU_ENV, DATA=str(data), RUNS=str(runs), SEEDS="1", PRINT="1", EPOCHS="0.06", MILESTONES="0.03")
    env["EXTRA"] = "--batch_size 16 --num_meta 100 --eval_every 0.06 --device cpu --arch smallcnn"  # 2 iterations
    done = set()
    for flip in ("flip2", "flip"):
        script = subprocess.run(
            ["bash", "scripts/table_fashionmnist.sh"],
            cwd=ROOT,
            env={**env, "FLIP_TYPE": flip},
            capture_output=True,
            text=True,
        )
        for line in script.stdout.splitlines():
            task = runner.plan_task(line)
            if task.run_dir in done:
                assert task.action == "done"  # the default table's uniform cells, run again with FLIP_TYPE=flip
                continue
            assert task.action == "run", (task.action, task.reason)
            at = next(i for i, w in enumerate(task.words) if w.endswith(MW))
            with one_thread():
                assert launch.main(MW, task.words[at + 1 :]) == 0
            done.add(task.run_dir)
    capsys.readouterr()
    assert len(done) == 24
    odd = runs / "fashionmnist_resnet32" / "fashionmnist" / "unif_p0.4" / "mwnet_lr0.2" / "seed1"
    shutil.copytree(runs / "fashionmnist_resnet32" / "fashionmnist" / "unif_p0.4" / "mwnet" / "seed1", odd)
    out = subprocess.run(
        [sys.executable, "scripts/summarize.py", "--runs", str(runs), "--csv", str(tmp_path / "s.csv")],
        cwd=ROOT,
        env=CPU_ENV,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    settings = {r["setting"] for r in rows if r["n"] == "1"}
    assert {"unif_p0.4", "unif_p0.6", "flip2_p0.2", "flip2_p0.4", "flip_p0.2", "flip_p0.4"} == settings
    assert len([r for r in rows if r["n"] == "1"]) == 24  # 6 settings x 4 rows, each with its run
    assert "| | unif_p0.4 | unif_p0.6 | flip2_p0.2 | flip2_p0.4 | flip_p0.2 | flip_p0.4 |" in out.stdout
    assert f"- {odd}: MW-Net.py --method mwnet --dataset fashionmnist" in out.stdout


def test_runs_made_by_hand_get_their_own_folders_and_a_table_by_configuration(capsys, tmp_path, monkeypatch):
    """Two runs with no --out that differ in --lr land in two folders; --like re-runs one with another seed;
    summarize over their parent prints one row per lr (n=1 without a spread), lr the one column of flags."""
    write_fashion(str(tmp_path / "fm"))
    monkeypatch.chdir(tmp_path)
    flags = ["--dataset", "fashionmnist", "--data_path", str(tmp_path / "fm"), *SHORT]
    for lr in ("0.05", "0.02"):
        assert run_main(capsys, MW, *flags, "--lr", lr).returncode == 0
    lrs = {json.load(open(os.path.join("runs", n, "config.json")))["lr"]: n for n in os.listdir("runs")}
    assert sorted(lrs) == [0.02, 0.05]  # two folders (named with a digest: SHORT differs in six flags)
    result = run_main(capsys, MW, "--like", os.path.join("runs", lrs[0.05]), "--seed", "2")
    assert result.returncode == 0, result.stderr
    again = json.load(open(os.path.join("runs", lrs[0.05][: -len("s1")] + "s2", "config.json")))
    assert again["seed"] == 2 and again["lr"] == 0.05 and again["epochs"] == 0.2 and again["dataset"] == "fashionmnist"
    for name in os.listdir("runs"):  # the mark of runs made from a checkout with local changes: on one of them
        path = os.path.join("runs", name, "config.json")
        config = json.load(open(path))
        config["environment"]["git_changes"] = name == lrs[0.05]
        json.dump(config, open(path, "w"))
    assert summarize.main(["--runs", "runs"]) == 0
    out = capsys.readouterr().out
    assert "Every row: script MW-Net.py, dataset fashionmnist, arch smallcnn, method mwnet," in out
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert rows[0] == "| lr | best | last | n |" and len(rows) == 3
    assert rows[1].startswith("| 0.02 | ") and " ± " not in rows[1] and rows[1].endswith(" | 1 |")
    assert rows[2].startswith("| 0.05 | ") and rows[2].count(" ± ") == 2 and rows[2].endswith(" | 2† |")
    assert "† from code with local changes (config.json: environment.git_changes)" in out
