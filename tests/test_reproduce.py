"""Reproduction tooling: the summary beside the paper, the figures, the runner, a table script."""

import csv
import json
import os
import subprocess

import numpy as np
import pytest
from conftest import ROOT, write_cifar

from scripts import plot, runner, summarize


def fake_run(path, best, last, **config):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "results.json"), "w") as f:
        json.dump({"best_test_acc": best, "last_test_acc": last}, f)


def test_summarize_means_paper_and_missing_cells(tmp_path, capsys):
    cell = tmp_path / "flip_resnet32" / "cifar10" / "flip2_p0.2"
    fake_run(cell / "mwnet" / "seed1", 90.0, 89.0)
    fake_run(cell / "mwnet" / "seed2", 91.0, 90.0)
    fake_run(cell / "erm_long" / "seed1", 70.0, 65.0)
    os.makedirs(cell / "l2rw" / "seed1")  # started, not finished: no results.json
    out_csv = tmp_path / "cells.csv"
    assert summarize.main(["--runs", str(tmp_path), "--csv", str(out_csv)]) == 0
    text = capsys.readouterr().out
    assert "best 90.50 ± 0.71, last 89.50 ± 0.71 (n=2); paper 90.33 ± 0.61 (+0.17)" in text
    assert "best 70.00 ± 0.00, last 65.00 ± 0.00 (n=1); paper 76.83 ± 2.30 (-6.83)" in text
    assert "missing; paper 87.86 ± 0.36" in text  # L2RW at 20 %: no finished seed
    assert "| Plain, same schedule | missing | missing | missing |" in text  # no paper figure for this row
    rows = list(csv.DictReader(open(out_csv)))
    assert len(rows) == 4 * 3
    missing = [r for r in rows if r["n"] == "0"]
    assert len(missing) == 10 and all(r["best_mean"] == "" and r["last_mean"] == "" for r in missing)
    hit = next(r for r in rows if r["row"] == "mwnet" and r["setting"] == "0.2")
    assert float(hit["best_mean"]) == 90.5 and float(hit["paper"]) == 90.33


def test_summarize_weights(tmp_path, capsys):
    cell = tmp_path / "fashionmnist_resnet32" / "fashionmnist" / "unif_p0.6"
    for seed, (clean, noisy, v0) in enumerate([(0.9, 0.1, 1.0), (0.8, 0.3, 0.8)], 1):
        run = cell / "mwnet" / f"seed{seed}"
        fake_run(run, 80.0, 79.0)
        json.dump({"vnet_loss_grid": [0.0, 2.5, 5.0]}, open(run / "config.json", "w"))
        with open(run / "metrics.jsonl", "w") as f:  # only the last line counts
            f.write(json.dumps({"weight_clean": 0.5, "weight_noisy": 0.5, "vnet_curve": [0.5] * 3}) + "\n")
            f.write(json.dumps({"weight_clean": clean, "weight_noisy": noisy, "vnet_curve": [v0, 0.5, 0.1]}) + "\n")
    assert summarize.main(["--runs", str(tmp_path), "--weights"]) == 0
    text = capsys.readouterr().out
    assert "| MW-Net | missing | clean 0.850 / noisy 0.200; V(0) 0.900, V(5) 0.100 (n=2) | missing | missing |" in text
    assert "| L2RW | missing | missing | missing | missing |" in text


def test_summarize_remark_and_no_runs(tmp_path, capsys):
    fake_run(tmp_path / "uniform_wrn" / "cifar10" / "unif_p0.4" / "erm" / "seed1", 88.0, 87.0)
    summarize.main(["--runs", str(tmp_path)])
    assert "paper 88.50 (-0.50)" in capsys.readouterr().out  # the authors' figure for MW-Net's schedule
    assert summarize.main(["--runs", str(tmp_path / "empty")]) == 2


def plot_run(path, method):
    os.makedirs(path)
    grid = [i / 10 for i in range(101)]
    config = {
        "method": method,
        "dataset": "fashionmnist",
        "corruption_type": "unif",
        "corruption_prob": 0.4,
        "seed": 1,
        "imb_factor": None,
        "vnet_loss_grid": grid,
    }
    json.dump(config, open(path / "config.json", "w"))
    curve = [1 / (1 + np.exp(x - 3)) for x in grid] if method == "mwnet" else None
    with open(path / "metrics.jsonl", "w") as f:
        for i in (1, 2):
            f.write(json.dumps({"epoch": i, "test_acc": 50.0 + i, "vnet_curve": curve}) + "\n")
    rng = np.random.default_rng(0)
    np.savez(path / "weights.npz", weight=rng.random(50), is_noisy=rng.random(50) < 0.4)


def test_plot_writes_the_figures(tmp_path):
    plot_run(tmp_path / "a", "mwnet")
    plot_run(tmp_path / "b", "erm")
    assert plot.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "fig")]) == 0
    for name in ("weighting_function.png", "weight_histograms.png", "test_accuracy.png"):
        data = (tmp_path / "fig" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
    assert plot.main([str(tmp_path / "nothing")]) == 2


def test_plot_labels_name_the_table_row(tmp_path):
    plot_run(tmp_path / "erm_long" / "seed1", "erm")
    plot_run(tmp_path / "erm" / "seed1", "erm")
    assert plot.load_run(str(tmp_path / "erm_long" / "seed1"))["label"].startswith("erm_long, fashionmnist, unif 40%")
    assert plot.load_run(str(tmp_path / "erm" / "seed1") + "/")["label"].startswith("erm, fashionmnist")


def test_runner_skips_resumes_and_writes_slurm(tmp_path):
    done, partial, fresh = tmp_path / "done", tmp_path / "partial", tmp_path / "fresh"
    fake_run(done, 1.0, 1.0)
    os.makedirs(partial)
    (partial / "checkpoint.pt").write_bytes(b"x")
    # Each command records its arguments, then writes results.json into its --out.
    script = "import json, os, sys; o = sys.argv[sys.argv.index('--out') + 1]; os.makedirs(o, exist_ok=True); json.dump(sys.argv, open(os.path.join(o, 'results.json'), 'w'))"
    commands = tmp_path / "commands.txt"
    commands.write_text("".join(f'python3 -c "{script}" --out {d}\n' for d in (done, partial, fresh)))
    slurm = tmp_path / "jobs.sbatch"
    assert runner.main([str(commands), "--slurm", str(slurm)]) == 0
    text = slurm.read_text()
    assert "#SBATCH --array=0-1" in text and "--resume" in text
    assert len(open(str(slurm) + ".commands").readlines()) == 2
    assert runner.main([str(commands), "--gpus", "cpu,cpu"]) == 0
    assert json.load(open(done / "results.json")) == {"best_test_acc": 1.0, "last_test_acc": 1.0}  # skipped
    assert json.load(open(partial / "results.json"))[-2:] == ["--resume", str(partial)]
    assert "--resume" not in json.load(open(fresh / "results.json"))
    assert (tmp_path / "fresh.log").exists()


def test_flip_table_script_dry_run_on_synthetic_cifar(tmp_path):
    data = tmp_path / "data"
    write_cifar(str(data), "cifar10", per_class=120)
    write_cifar(str(data), "cifar100", per_class=12)
    runs = tmp_path / "runs"
    env = dict(
        os.environ, DRY_RUN="1", DATA=str(data), RUNS=str(runs), SEEDS="1", GPUS="cpu,cpu", EXTRA="--batch_size 16"
    )
    proc = subprocess.run(
        ["bash", "scripts/table_flip_resnet32.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "24 finished, 0 failed" in proc.stdout
    results = sorted(runs.glob("flip_resnet32/*/*/*/seed1/results.json"))
    assert len(results) == 2 * 3 * 4
    config = json.load(open(runs / "flip_resnet32/cifar100/flip2_p0.4/erm_long/seed1/config.json"))
    assert (config["epochs"], config["milestones"], config["method"], config["dry_run"]) == (
        120,
        [80, 100],
        "erm",
        True,
    )
    cells = summarize.cells(str(runs), "flip_resnet32", "cifar10")
    assert all(c["n"] == 1 for c in cells)
    again = subprocess.run(
        ["bash", "scripts/table_flip_resnet32.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert "24 runs, 24 done, 0 to run" in again.stdout


@pytest.mark.parametrize("script", ["table_uniform_wrn.sh", "table_longtail_resnet32.sh", "table_fashionmnist.sh"])
def test_other_table_scripts_print_every_cell(script):
    env = dict(os.environ, PRINT="1", SEEDS="1 2 3 4 5")
    proc = subprocess.run(["bash", f"scripts/{script}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    lines = proc.stdout.strip().splitlines()
    expected = {
        "table_uniform_wrn.sh": 2 * 3 * 4 * 5,
        "table_longtail_resnet32.sh": 2 * 6 * 4 * 5,
        "table_fashionmnist.sh": 4 * 4 * 5,
    }[script]
    assert proc.returncode == 0 and len(lines) == expected
    assert len({line.split("--out ")[1].split()[0] for line in lines}) == expected  # one directory per run
