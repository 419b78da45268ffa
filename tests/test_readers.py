"""Every reader of a file from outside the process, fed what a careful user (or a damaged disk) can hand it: random
bytes, an empty file, a file cut short, a pickle that would run code when unpickled, and a file of the right kind
with the wrong shapes or values. Each ends in one line naming the file and exit 2, nothing written, no code run.
(The CIFAR-N label files and Clothing1M's lists have theirs in test_cifar_n.py and test_clothing1m.py.)"""

import gzip
import io
import json
import pickle
import shutil

import numpy as np
import pytest
import torch
from conftest import (
    MW,
    SHORT,
    Payload,
    assert_one_line_error,
    run_main,
    snapshot,
    write_cifar,
    write_fashion,
    write_idx,
)

from mwnet.tools import plot, runner, summarize

KINDS = ("random bytes", "empty", "truncated", "pickle payload")


def spoil(path, kind, marker, opener=open):
    """`path`, a file of its kind, gone wrong in one way (written with `opener`: gzip.open for an idx.gz)."""
    with opener(path, "rb") as f:
        good = f.read()
    data = {
        "random bytes": np.random.default_rng(0).bytes(4096),
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "pickle payload": pickle.dumps({"labels": Payload(str(marker))}, protocol=2),
    }[kind]
    with opener(path, "wb") as f:
        f.write(data)


def torch_bytes(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    root = tmp_path_factory.mktemp("fm")
    write_fashion(str(root))
    return root


@pytest.fixture(scope="module")
def finished(fashion, tmp_path_factory):
    """A finished short run on the small Fashion-MNIST, and its flags."""
    import contextlib

    from mwnet.engine import launch

    base = tmp_path_factory.mktemp("readers")
    flags = ["--dataset", "fashionmnist", "--data_path", str(fashion), "--device", "cpu", *SHORT]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert launch.main(MW, ["--out", str(base / "run"), *flags]) == 0
    return base / "run", flags


@pytest.fixture
def run_copy(finished, tmp_path):
    run, flags = finished
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run", flags


# ---------------------------------------------------------------- torch files: --pretrained, checkpoints


@pytest.mark.parametrize("kind", [*KINDS, "torch.save payload", "another network", "a string for a tensor"])
def test_pretrained_weights(capsys, fashion, tmp_path, kind):
    """--pretrained FILE: the line says what the file is not, never to load it with weights_only=False."""
    import torchvision

    path, marker = tmp_path / "weights.pt", tmp_path / "marker"
    good = torchvision.models.resnet18().state_dict()  # small to write; refused as ResNet-50's
    if kind == "torch.save payload":
        path.write_bytes(torch_bytes({"conv1.weight": Payload(str(marker))}))
    elif kind == "a string for a tensor":
        path.write_bytes(torch_bytes({**torchvision.models.resnet50().state_dict(), "conv1.weight": "zeros"}))
    else:
        path.write_bytes(torch_bytes(good))
        if kind != "another network":
            spoil(path, kind, marker)
    flags = [
        "--dataset",
        "fashionmnist",
        "--data_path",
        str(fashion),
        "--num_meta",
        "100",
        "--arch",
        "resnet50",
        "--dry_run",
    ]
    result = run_main(capsys, MW, *flags, "--pretrained", str(path), "--out", str(tmp_path / "run"))
    assert_one_line_error(result, f"--pretrained {path}")
    assert "weights_only" not in result.stderr and not marker.exists() and not (tmp_path / "run").exists()
    fragment = {
        "another network": "is not ResNet-50's weights",
        "a string for a tensor": "'conv1.weight' holds a str, not a tensor",
        "pickle payload": "holds more than tensors",
        "torch.save payload": "holds more than tensors",
    }.get(kind, "")
    assert fragment in result.stderr


CHECKPOINT_KINDS = [*KINDS, "torch.save payload", "a layer of another shape"]


@pytest.mark.parametrize(
    "file,kind",
    [("checkpoint.pt", k) for k in [*CHECKPOINT_KINDS, "a sampler of another set"]]
    + [("model_best.pt", k) for k in CHECKPOINT_KINDS],
)
def test_checkpoints_resumed_or_evaluated(capsys, run_copy, kind, file):
    """--resume RUN reads its checkpoint.pt, --evaluate a checkpoint.pt or model_best.pt."""
    run, _ = run_copy
    path, marker = run / file, run.parent / "marker"
    if kind in ("a layer of another shape", "a sampler of another set", "torch.save payload"):
        state = torch.load(path, weights_only=True)
        if kind == "a layer of another shape":
            key = next(iter(state["model"]))
            state["model"][key] = torch.zeros(3, 3)
        elif kind == "a sampler of another set":
            state["train_loader"]["perm"] = torch.arange(7)
        else:
            state["model"] = Payload(str(marker))
        path.write_bytes(torch_bytes(state))
    else:
        spoil(path, kind, marker)
    if file == "checkpoint.pt":  # resume needs a stopped run: its results.json gone
        (run / "results.json").unlink()
    before = snapshot(run)
    command = ["--resume", str(run)] if file == "checkpoint.pt" else ["--evaluate", str(path)]
    result = run_main(capsys, MW, *command)
    assert_one_line_error(result, str(path))
    assert "weights_only" not in result.stderr and not marker.exists() and snapshot(run) == before


# ---------------------------------------------------------------- the datasets' files


@pytest.mark.parametrize("kind", [*KINDS, "rows of 3071 pixels", "label 10"])
def test_a_cifar_file(capsys, tmp_path, kind):
    write_cifar(str(tmp_path), "cifar10", per_class=2)
    path, marker = tmp_path / "cifar-10-batches-py" / "data_batch_2", tmp_path / "marker"
    if kind in KINDS:
        spoil(path, kind, marker)
    else:
        with open(path, "rb") as f:
            entry = pickle.load(f)
        if kind == "label 10":
            entry["labels"][0] = 10
        else:
            entry["data"] = entry["data"][:, :3071]
        with open(path, "wb") as f:
            pickle.dump(entry, f, protocol=2)
    result = run_main(capsys, MW, "--data_path", str(tmp_path), "--dry_run", "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "cifar-10-batches-py")
    assert not marker.exists() and not (tmp_path / "run").exists()


IMAGES, LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"


@pytest.mark.parametrize(
    "name,kind",
    [(n, k) for n in (IMAGES, LABELS) for k in KINDS] + [(IMAGES, "images of 28 x 27"), (LABELS, "label 10")],
)
def test_a_fashion_mnist_file(capsys, tmp_path, kind, name):
    images, labels = write_fashion(str(tmp_path))
    path, marker = tmp_path / name, tmp_path / "marker"
    if kind in KINDS:
        spoil(path, kind, marker, opener=gzip.open)
    elif kind == "label 10":
        labels[3] = 10
        write_idx(str(path), labels)
    else:
        write_idx(str(path), images[:, :, :27])
    flags = ["--dataset", "fashionmnist", "--data_path", str(tmp_path), "--num_meta", "100", "--dry_run"]
    result = run_main(capsys, MW, *flags, "--out", str(tmp_path / "run"))
    assert_one_line_error(result, str(tmp_path))
    assert not marker.exists() and not (tmp_path / "run").exists()


# ---------------------------------------------------------------- a run's own files, read back


@pytest.mark.parametrize("kind", [*KINDS, "a list", "a flag of another type"])
def test_a_config_resumed(capsys, run_copy, kind):
    run, _ = run_copy
    path, marker = run / "config.json", run.parent / "marker"
    (run / "results.json").unlink()
    if kind == "a list":
        path.write_text("[]")
    elif kind == "a flag of another type":
        path.write_text(json.dumps({**json.loads(path.read_text()), "lr": "fast"}))
    else:
        spoil(path, kind, marker)
    before = snapshot(run)
    assert_one_line_error(run_main(capsys, MW, "--resume", str(run)), str(run))
    assert not marker.exists() and snapshot(run) == before


@pytest.mark.parametrize("kind", [*KINDS, "lengths that differ", "no weights"])
def test_weights_of_a_run_in_the_figures(capsys, run_copy, tmp_path, kind):
    """weights.npz feeds plot.py's histograms (and the laptop report): a damaged one is named and left out."""
    run, _ = run_copy
    path, marker = run / "weights.npz", tmp_path / "marker"
    if kind in KINDS:
        spoil(path, kind, marker)
    else:
        arrays = dict(np.load(path))
        if kind == "no weights":
            del arrays["weight"]
        else:
            arrays["weight"] = arrays["weight"][:-5]
        np.savez(path, **arrays)
    assert plot.main([str(run), "--out", str(tmp_path / "figures")]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"plot: left out {run}: {path} is damaged") and err.count("\n") == 1, err
    assert "(left out of the histograms)" in err and not marker.exists()


@pytest.mark.parametrize("name", ["results.json", "metrics.jsonl"])
@pytest.mark.parametrize("kind", KINDS)
def test_results_and_metrics_in_the_summary(capsys, tmp_path, name, kind):
    """summarize reads every seed's results.json and metrics.jsonl: a damaged one is named, the rest tabulated."""
    from test_faults import fake_table_run

    cell = tmp_path / "flip_resnet32" / "cifar10" / "flip2_p0.2" / "mwnet"
    for seed, best in ((1, 90.0), (2, 91.0), (3, 10.0)):
        fake_table_run(cell / f"seed{seed}", seed, best)
    path, marker = cell / "seed3" / name, tmp_path / "marker"
    spoil(path, kind, marker)
    assert summarize.main(["--runs", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert not marker.exists() and not err
    if name == "metrics.jsonl" and kind in ("empty", "truncated"):  # what a kill in mid-write leaves: the torn
        assert "(n=3)" in out  # line is dropped, and the numbers are results.json's
    else:
        assert "best 90.50 ± 0.71" in out and "(n=2)" in out
        assert f"- {cell / 'seed3'}: unreadable: {path} is not readable JSON" in out


@pytest.mark.parametrize("kind", [*KINDS, "an unclosed quote"])
def test_the_runners_command_file(capsys, tmp_path, kind):
    """The runner's file of commands (planned into a SLURM script here, so that nothing runs)."""
    path, marker = tmp_path / "commands.txt", tmp_path / "marker"
    path.write_text("".join(f"python MW-Net.py --out {tmp_path}/r{i} --epochs 1\n" for i in range(20)))
    if kind == "an unclosed quote":
        path.write_text(f"python MW-Net.py --out '{tmp_path}/a --epochs 1\n")
    else:
        spoil(path, kind, marker)
    code = runner.main([str(path), "--slurm", str(tmp_path / "job.sh")])
    out, err = capsys.readouterr()
    assert not marker.exists() and "Traceback" not in err
    if kind == "truncated":  # ten commands and the start of one, planned or refused one by one
        assert code in (0, 1) and "runner: 11 runs: " in out, (out, err)
    elif kind == "an unclosed quote":
        assert code == 1 and "refused  ?: not a shell command line (No closing quotation)" in out, out
    else:
        assert code == 2 and err.count("\n") == 1 and str(path) in err and not (tmp_path / "job.sh").exists()
