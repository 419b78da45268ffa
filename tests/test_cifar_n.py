"""CIFAR-10N / CIFAR-100N human labels: the split of the synthetic protocol, the file read safely and checked,
the runs, the table and its summary, and ResNet-34 of the CIFAR kind."""

import json
import os
import pickle
import subprocess
import zipfile

import numpy as np
import pytest
import torch
from conftest import MW, ROOT, SMALL_WRN, WRN, assert_one_line_error, run_main

from mwnet.data import cifar_n
from mwnet.data.noise import make_noisy_split
from mwnet.engine.components import build_data
from mwnet.engine.options import parse_args
from mwnet.tools import runner, summarize

SHARED = os.path.join(ROOT, "..", "shared", "data", "cifar-n")


def write_cifar_with_labels(root, name, labels, coarse=None):
    """CIFAR's on-disk format with the given training labels (blank images: the labels are what is tested)."""
    n = len(labels)
    test = {"data": np.zeros((20, 3072), np.uint8)}
    if name == "cifar10":
        folder = os.path.join(root, "cifar-10-batches-py")
        parts = np.array_split(np.arange(n), 5)
        files = {
            f"data_batch_{i + 1}": {"data": np.zeros((len(p), 3072), np.uint8), "labels": labels[p].tolist()}
            for i, p in enumerate(parts)
        }
        files["test_batch"] = {**test, "labels": [i % 10 for i in range(20)]}
    else:
        folder = os.path.join(root, "cifar-100-python")
        files = {
            "train": {
                "data": np.zeros((n, 3072), np.uint8),
                "fine_labels": labels.tolist(),
                "coarse_labels": coarse.tolist(),
            },
            "test": {**test, "fine_labels": list(range(20)), "coarse_labels": list(range(20))},
        }
    os.makedirs(folder, exist_ok=True)
    for fname, content in files.items():
        with open(os.path.join(folder, fname), "wb") as f:
            pickle.dump(content, f, protocol=2)


@pytest.fixture(scope="module")
def human(tmp_path_factory):
    """{dataset: (data folder, label file, clean labels, file content)}: the authors' files from ../shared with
    CIFAR pickles of their clean labels, or, where ../shared is absent, small files in the same format."""
    out = {}
    for name, k in (("cifar10", 10), ("cifar100", 100)):
        root = tmp_path_factory.mktemp(name)
        shared = os.path.join(SHARED, cifar_n.FILES[name])
        if os.path.exists(shared):
            path, content = shared, cifar_n.read_archive(shared)
        else:  # a small file in the official format: torch.save of a dict of NumPy int64 arrays
            rng = np.random.default_rng(0)
            clean = rng.permutation(np.repeat(np.arange(k), 1200 // k))
            noisy = np.where(rng.random(len(clean)) < 0.3, rng.integers(0, k, len(clean)), clean)
            content = {"clean_label": clean}
            content.update({key: noisy for key in cifar_n.VARIANTS[name].values()})
            if name == "cifar100":
                content["clean_coarse_label"] = (clean // 5).tolist()
            path = str(root / cifar_n.FILES[name])
            torch.save(content, path)
        clean = np.asarray(content["clean_label"], dtype=np.int64)
        coarse = np.asarray(content["clean_coarse_label"]) if name == "cifar100" else None
        write_cifar_with_labels(str(root), name, clean, coarse)
        out[name] = (str(root), path, clean, content)
    return out


@pytest.mark.parametrize("seed", [1, 3])
def test_the_split_is_the_synthetic_protocols_and_the_labels_the_files(human, seed):
    root, path, clean, content = human["cifar10"]
    args = parse_args(MW, ["-ctype", "human", "--human_labels", "worse", "--data_path", root, "--noise_file", path])
    args.seed, args.method = seed, "erm"  # no meta loader needed to check the split
    data = build_data(args, torch.device("cpu"), [0, 1, 2])
    meta_idx, train_idx, _ = make_noisy_split(clean, 10, 1000, "unif", 0.4, seed)
    np.testing.assert_array_equal(data.meta_idx, meta_idx)  # the same meta images as synthetic noise of this seed
    np.testing.assert_array_equal(data.train_idx, train_idx)
    np.testing.assert_array_equal(data.noisy_labels, np.asarray(content["worse_label"])[train_idx])
    np.testing.assert_array_equal(data.clean_labels, clean[train_idx])
    assert not np.intersect1d(data.meta_idx, data.train_idx).size
    assert data.noise_rate == pytest.approx(np.mean(np.asarray(content["worse_label"])[train_idx] != clean[train_idx]))
    assert data.noise_source == {"file": os.path.abspath(path), "sha256": cifar_n.sha256_of(path), "variant": "worse"}
    if os.path.exists(os.path.join(SHARED, cifar_n.FILES["cifar10"])):
        assert cifar_n.sha256_of(path) == cifar_n.SHA256["cifar10"]
        assert abs(data.noise_rate - 0.4021) < 0.005  # the README's 40.21 %, on the 49,000 training images


@pytest.mark.parametrize("script", [MW, WRN])
def test_a_dry_run_with_human_labels_leaves_the_usual_files(capsys, human, tmp_path, script):
    root, path, clean, content = human["cifar100"]
    out = tmp_path / "run"
    extra = SMALL_WRN if script == WRN else []
    args = ["--dataset", "cifar100", "-ctype", "human", "--data_path", root, "--noise_file", path, *extra]
    result = run_main(capsys, script, "--dry_run", "--out", str(out), "--batch_size", "32", *args)
    assert result.returncode == 0, result.stderr
    assert "human labels (noisy, CIFAR-N)" in result.stdout
    for name in ("config.json", "results.json", "split.npz", "weights.npz", "metrics.jsonl", "checkpoint.pt"):
        assert (out / name).exists(), name
    config = json.load(open(out / "config.json"))
    assert config["human_labels"] == "noisy" and config["corruption_prob"] == 0.0
    assert config["noise_source"]["sha256"] == cifar_n.sha256_of(path) and config["noise_source"]["variant"] == "noisy"
    split = np.load(out / "split.npz")
    np.testing.assert_array_equal(split["noisy_labels"], np.asarray(content["noisy_label"])[split["train_idx"]])
    assert config["noise_rate"] == pytest.approx(np.mean(split["noisy_labels"] != split["clean_labels"]))
    weights = np.load(out / "weights.npz")
    np.testing.assert_array_equal(weights["is_noisy"], split["noisy_labels"] != split["clean_labels"])


def damaged(path, kind, tmp_path):
    """A label file gone wrong in one way."""
    content = cifar_n.read_archive(path)
    target = str(tmp_path / f"{kind}.pt")
    if kind == "tfds order":
        order = np.random.default_rng(0).permutation(len(content["clean_label"]))
        torch.save({k: np.asarray(v)[order] for k, v in content.items() if k.endswith("label")}, target)
    elif kind == "truncated":
        with open(path, "rb") as f, open(target, "wb") as out:
            out.write(f.read()[:5000])
    elif kind == "no variant":
        torch.save({k: v for k, v in content.items() if k != "aggre_label"}, target)
    elif kind == "short":
        torch.save({k: np.asarray(v)[:100] for k, v in content.items()}, target)
    elif kind == "out of range":
        torch.save({**content, "aggre_label": np.asarray(content["aggre_label"]) + 10}, target)
    elif kind == "float labels":  # 3.5, 7.5, ...: not the file meant, though int() would make labels of them
        torch.save({**content, "aggre_label": np.asarray(content["aggre_label"]) + 0.5}, target)
    elif kind == "random bytes":
        with open(target, "wb") as out:
            out.write(np.random.default_rng(0).bytes(4096))
    elif kind == "empty":
        open(target, "wb").close()
    elif kind == "runs code":
        marker = tmp_path / "marker"

        class Payload:
            def __reduce__(self):
                return (open, (str(marker), "w"))

        with zipfile.ZipFile(target, "w") as archive:
            archive.writestr("archive/data.pkl", pickle.dumps({"clean_label": Payload()}))
    return target


@pytest.mark.parametrize(
    "kind,fragment",
    [
        ("tfds order", "its clean_label differs from the training labels under --data_path"),
        ("truncated", "is not a CIFAR-N label file (not a torch.save archive"),
        ("no variant", "has no 'aggre_label'"),
        ("short", "holds 100 labels"),
        ("out of range", "has labels outside the 10 classes 0..9"),
        ("float labels", ".5 (image 0) is not a whole number; class labels are 0..9"),
        ("random bytes", "is not a CIFAR-N label file (not a torch.save archive"),
        ("empty", "is not a CIFAR-N label file (not a torch.save archive"),
        ("runs code", "holds more than label arrays"),
    ],
)
def test_a_wrong_label_file_is_one_line_and_nothing_is_written(capsys, human, tmp_path, kind, fragment):
    root, path, _, _ = human["cifar10"]
    bad = damaged(path, kind, tmp_path)
    args = ["-ctype", "human", "--human_labels", "aggre", "--data_path", root, "--noise_file", bad]
    result = run_main(capsys, MW, "--dry_run", "--out", str(tmp_path / "run"), *args)
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "run").exists() and not (tmp_path / "marker").exists()


@pytest.mark.parametrize(
    "args,fragment",
    [
        (
            ["-ctype", "human", "--human_labels", "aggre", "--corruption_prob", "0.4"],
            "--corruption_prob does not apply",
        ),
        (["-ctype", "human"], "pass --human_labels, one of aggre, worse"),
        (["-ctype", "human", "--human_labels", "noisy"], "pass --human_labels, one of aggre"),
        (["-ctype", "human", "--human_labels", "aggre", "--dataset", "fashionmnist"], "needs CIFAR-10 or CIFAR-100"),
        (["--human_labels", "aggre"], "go with -ctype human"),
        (
            ["-ctype", "human", "--human_labels", "aggre", "--noise_file", "/nonexistent/labels.pt"],
            "no CIFAR-N label file",
        ),
    ],
)
def test_human_label_flags_are_checked(capsys, human, tmp_path, args, fragment):
    root = human["cifar10"][0]
    result = run_main(capsys, MW, "--data_path", root, "--out", str(tmp_path / "run"), *args)
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "run").exists()


def test_download_checks_the_sha256_before_the_file_is_used(human, tmp_path, monkeypatch):
    _, path, _, _ = human["cifar10"]
    monkeypatch.setattr(cifar_n, "URL", f"file://{os.path.dirname(os.path.abspath(path))}/{{}}")
    monkeypatch.setitem(cifar_n.SHA256, "cifar10", cifar_n.sha256_of(path))
    cifar_n.download("cifar10", str(tmp_path / "got.pt"))
    assert cifar_n.sha256_of(tmp_path / "got.pt") == cifar_n.sha256_of(path)
    monkeypatch.setitem(cifar_n.SHA256, "cifar10", "0" * 64)
    with pytest.raises(cifar_n.UserError, match="SHA-256 differs"):
        cifar_n.download("cifar10", str(tmp_path / "bad.pt"))
    assert sorted(os.listdir(tmp_path)) == ["got.pt"]  # no file, no temporary file, of the failed download


def test_the_table_plans_four_settings_of_four_rows_and_the_summary_keeps_them_apart(tmp_path, capsys):
    env = {**os.environ, "PRINT": "1", "SEEDS": "1"}
    proc = subprocess.run(["bash", "scripts/table_cifar_n.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and len(lines) == 16
    assert sum("--meta_source selected" in line and "/mwnet_selected/" in line for line in lines) == 4
    cells = {tuple(line.split("--out ")[1].split()[0].split("/")[-4:-1]) for line in lines}
    assert {(d, v) for _, d, v, _ in [("", *c[:2], c[2]) for c in cells]} == {
        ("cifar10", "aggre"),
        ("cifar10", "random1"),
        ("cifar10", "worse"),
        ("cifar100", "noisy"),
    }
    assert all(runner.plan_task(line).action == "run" for line in lines)
    from test_reproduce import fake_run

    for dataset, variant, best in (("cifar10", "aggre", 80.0), ("cifar10", "worse", 60.0), ("cifar100", "noisy", 50.0)):
        flags = [
            "--dataset",
            dataset,
            "-ctype",
            "human",
            "--human_labels",
            variant,
            "--arch",
            "resnet34",
            "--method",
            "mwnet",
        ]
        flags += ["--epochs", "100", "--milestones", "60", "--batch_size", "128"]
        fake_run(tmp_path / "cifar_n_resnet34" / dataset / variant / "mwnet" / "seed1", best, best, flags)
        selected = tmp_path / "cifar_n_resnet34" / dataset / variant / "mwnet_selected"
        fake_run(selected / "seed1", best - 5, best - 5, [*flags, "--meta_source", "selected"])
    wrong = tmp_path / "cifar_n_resnet34" / "cifar10" / "aggre" / "mwnet" / "seed2"  # a selected run in the clean row
    human = ["--dataset", "cifar10", "-ctype", "human", "--human_labels", "aggre", "--arch", "resnet34"]
    schedule = ["--epochs", "100", "--milestones", "60", "--batch_size", "128", "--seed", "2"]
    fake_run(wrong, 10.0, 10.0, [*human, *schedule, "--method", "mwnet", "--meta_source", "selected"])
    assert summarize.main(["--runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| | aggre | random1 | worse |" in out and "| | noisy |" in out
    assert "| MW-Net | best 80.00, last 80.00 (n=1) | missing | best 60.00" in out
    assert "| MW-Net, meta set selected (no clean label) | best 75.00, last 75.00 (n=1) | missing | best 55.00" in out
    assert f"- {wrong}: MW-Net.py --method mwnet --dataset cifar10" in out  # named under "Not in the table"
    assert "Plain, BaseModel schedule" not in out  # the table's rows: MW-Net, L2RW, plain training


def test_resnet34_has_the_cifar_kinds_parameters():
    """21,282,122 for 10 classes: torchvision's ResNet-34 with a 3x3 stem of 3 -> 64 channels for its 7x7 one."""
    import torchvision

    from mwnet.models.resnet import ResNet34

    ours = sum(p.numel() for p in ResNet34(10).parameters())
    theirs = sum(p.numel() for p in torchvision.models.resnet34(num_classes=10).parameters())
    assert ours == theirs - 7 * 7 * 3 * 64 + 3 * 3 * 3 * 64 == 21282122
    assert ResNet34(10)(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_a_selected_meta_set_reads_the_human_labels_only(capsys, human, tmp_path):
    """The challenge-compliant row: no meta image taken out of the training set, the meta set selected by the
    human labels."""
    root, path, clean, content = human["cifar10"]
    flags = ["-ctype", "human", "--human_labels", "worse", "--data_path", root, "--noise_file", path]
    selected = ["--meta_source", "selected", "--arch", "smallcnn"]  # its loss pass covers the 50,000 images
    result = run_main(capsys, MW, *flags, *selected, "--dry_run", "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    split = np.load(tmp_path / "run" / "split.npz")
    assert len(split["meta_idx"]) == 0 and len(split["train_idx"]) == len(clean)
    record = json.load(open(tmp_path / "run" / "meta_selection.json"))
    worse = np.asarray(content["worse_label"])
    assert np.bincount(worse[record["indices"]], minlength=10).tolist() == [100] * 10
    assert record["purity"] == pytest.approx(np.mean(worse[record["indices"]] == clean[record["indices"]]))
