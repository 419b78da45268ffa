"""A dataset and a method added from outside the package, in this one file: a DatasetSpec and a MethodSpec
registered, nothing else touched, trained through both scripts, the runner and summarize.

Run as a front end, it registers them and runs a script: python tests/test_toy_plugin.py MW-Net.py FLAGS
(the runner's commands start it so, each run in a process of its own).
"""

import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mwnet.data.catalog import SPECS, DatasetSpec  # noqa: E402
from mwnet.method import METHODS, MethodSpec  # noqa: E402
from mwnet.method.meta_step import margins  # noqa: E402

K, PER_CLASS, TEST_PER_CLASS, WEIGHT = 4, 100, 25, 0.5


def load_toy(root, train, download):
    """4 classes of 32 x 32 noise, each with a bright square in its own corner; no file read."""
    rng = np.random.default_rng(0 if train else 1)
    n = PER_CLASS if train else TEST_PER_CLASS
    labels = np.repeat(np.arange(K), n)
    images = rng.integers(0, 128, (len(labels), 32, 32, 3), dtype=np.uint8)
    for c in range(K):
        r, q = divmod(c, 2)
        images[labels == c, 16 * r : 16 * r + 12, 16 * q : 16 * q + 12] += 120
    return images, labels.astype(np.int64), None


def fixed_step(learner, args, x, y, meta, lr, reduce):
    """Every sample weighted WEIGHT: plain training at a scaled loss, in plain torch."""
    logits = learner.model(x)
    losses = F.cross_entropy(logits, y, reduction="none")
    weights = torch.full_like(losses, WEIGHT)
    loss = (weights * losses).mean()
    learner.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    learner.optimizer.step()
    out = {"losses": losses.detach(), "weights": weights, "loss": loss.detach(), "meta_loss": torch.zeros(())}
    return {**out, "margins": margins(logits, y)}


NAMES = ("north-west", "north-east", "south-west", "south-east")
TOY = DatasetSpec("toy4", K, NAMES, ((0.3,) * 3, (0.2,) * 3), downloads=False, load=load_toy)
FIXED = MethodSpec("fixed", "Fixed weights", meta_set=False, vnet=False, step=fixed_step)


def register(setitem=None):
    """Add the two specs (through setitem(mapping, key, value), pytest's monkeypatch.setitem, in a test)."""
    setitem = setitem or (lambda mapping, key, value: mapping.__setitem__(key, value))
    setitem(SPECS, TOY.name, TOY)
    setitem(METHODS, FIXED.name, FIXED)


FLAGS = [
    "--dataset",
    "toy4",
    "--corruption_prob",
    "0.2",
    "--epochs",
    "0.2",
    "--eval_every",
    "0.1",
    "--batch_size",
    "16",
    "--num_meta",
    "40",
]
FLAGS += ["--lr", "0.02", "--milestones", "--arch", "smallcnn", "--checkpoint_every", "0"]


def test_a_dataset_and_a_method_from_one_file_train_through_both_scripts_the_runner_and_summarize(
    capsys, monkeypatch, tmp_path
):
    import json

    from conftest import CPU_ENV, MW, ROOT, WRN, run_main

    from mwnet.tools import runner, summarize

    register(monkeypatch.setitem)
    mw = run_main(capsys, MW, *FLAGS, "--method", "fixed", "--out", str(tmp_path / "runs" / "mw-fixed"))
    assert mw.returncode == 0, mw.stderr
    assert "fixed" in mw.stdout and "toy4" in mw.stdout
    wrn_flags = [*FLAGS[:4], "--iters", "12", "--eval_every", "6", "--batch_size", "16", "--num_meta", "40"]
    wrn_flags += ["--lr", "0.02", "--arch", "smallcnn", "--milestones", "--checkpoint_every", "0"]
    wrn = run_main(capsys, WRN, *wrn_flags, "--out", str(tmp_path / "runs" / "wrn-mwnet"))
    assert wrn.returncode == 0, wrn.stderr
    for run in ("mw-fixed", "wrn-mwnet"):
        results = json.load(open(tmp_path / "runs" / run / "results.json"))
        assert results["status"] == "finished" and results["best_test_acc"] > 25, run  # above chance (4 classes)
    header = open(tmp_path / "runs" / "mw-fixed" / "samples.csv").readline()
    assert header.startswith("rank,") and "north-" in open(tmp_path / "runs" / "mw-fixed" / "samples.csv").read()
    # The runner: each run in a process of its own, started by this file as its front end; run again, done.
    listing = tmp_path / "commands.txt"
    front = [sys.executable, os.path.abspath(__file__), MW, *FLAGS, "--method", "fixed"]
    listing.write_text(
        "".join(" ".join([*front, "--seed", str(s), "--out", str(tmp_path / "runs" / f"r{s}")]) + "\n" for s in (1, 2))
    )
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert runner.main([str(listing), "--gpus", "cpu"]) == 0
    assert "2 runs: 2 finished" in capsys.readouterr().out
    assert runner.main([str(listing), "--gpus", "cpu"]) == 0
    assert "2 runs: 2 skipped (done)" in capsys.readouterr().out
    # summarize: the runs by configuration, the three of the fixed weighting (two seeds) in one row
    assert summarize.main(["--runs", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "dataset toy4" in out and "| MW-Net.py | fixed |" in out and "| train_WRN-28-10_Meta_PGC.py | mwnet |" in out
    assert [line.rstrip("|† ").split("|")[-1].strip(" †") for line in out.splitlines() if "| fixed |" in line] == ["3"]
    # the scripts without the front end do not know the dataset: one line, no traceback
    alone = subprocess.run(
        [sys.executable, MW, *FLAGS, "--out", str(tmp_path / "x")],
        cwd=ROOT,
        env=CPU_ENV,
        capture_output=True,
        text=True,
    )
    assert alone.returncode == 2 and "toy4" in alone.stderr and "Traceback" not in alone.stderr


if __name__ == "__main__":
    from mwnet.engine.launch import main

    register()
    sys.exit(main(os.path.basename(sys.argv[1]), sys.argv[2:]))
