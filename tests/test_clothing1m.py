"""Clothing1M: the sets its lists make, the streaming pipeline (the same images and augmentations after a resume,
whatever the workers), the runs of each method, ResNet-50 and its pretrained weights, and every bad file."""

import json
import os
import pickle
import shutil
import signal

import numpy as np
import pytest
import torch
from conftest import (
    MW,
    Payload,
    assert_one_line_error,
    metrics,
    one_thread,
    run_main,
    snapshot,
    stop_at,
    write_clothing1m,
)

from mwnet.data.catalog import MEAN_STD
from mwnet.data.stream_loader import ImageFiles, StreamLoader
from mwnet.engine.components import build_data
from mwnet.engine.options import parse_args

SMALL = ["--arch", "resnet32", "--image_size", "32", "--num_meta", "28", "--batch_size", "8", "--workers", "0"]
SHORT = ["--epochs", "0.4", "--eval_every", "0.12", "--milestones", "0.3", "--checkpoint_every", "0"]  # 4 its


@pytest.fixture(scope="module")
def clothing(tmp_path_factory):
    root = tmp_path_factory.mktemp("clothing1m")
    return str(root), write_clothing1m(str(root))


def test_the_sets_are_the_lists_and_the_clean_training_list_is_never_used(clothing):
    root, sets = clothing
    args = parse_args(MW, ["--dataset", "clothing1m", "--data_path", root, *SMALL])
    data = build_data(args, torch.device("cpu"), [0, 1, 2])
    train_paths = [p.decode() for p in data.train.files.paths]
    assert train_paths == sets["train"][0]
    np.testing.assert_array_equal(data.noisy_labels, sets["train"][1])  # the noisy labels
    meta_paths = [p.decode() for p in data.meta.files.paths]
    assert set(meta_paths) <= set(sets["val"][0]) and len(meta_paths) == 28
    val_labels = dict(zip(*sets["val"], strict=True))
    assert [val_labels[p] for p in meta_paths] == data.meta.files.labels.tolist()  # clean labels
    assert np.bincount(data.meta.files.labels, minlength=14).tolist() == [2] * 14  # class-balanced
    assert [p.decode() for p in data.test.files.paths] == sets["test"][0]
    used = set(train_paths) | set(meta_paths) | {p.decode() for p in data.test.files.paths}
    assert not used & set(sets["clean_train"][0]) and not set(meta_paths) & set(train_paths)
    known = data.clean_labels >= 0  # every third training image also has its clean label
    assert known.sum() == len(train_paths) // 3 + (len(train_paths) % 3 > 0)
    other = parse_args(MW, ["--dataset", "clothing1m", "--data_path", root, *SMALL, "--seed", "2"])
    assert not np.array_equal(build_data(other, torch.device("cpu"), [0, 1, 2]).meta_idx, data.meta_idx)  # seeded


@pytest.mark.parametrize("method", ["mwnet", "l2rw", "erm"])
def test_a_dry_run_of_each_method_leaves_the_usual_files(capsys, clothing, tmp_path, method):
    root, _ = clothing
    out = tmp_path / method
    result = run_main(
        capsys,
        MW,
        "--dataset",
        "clothing1m",
        "--data_path",
        root,
        *SMALL,
        "--method",
        method,
        "--dry_run",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "its web labels" in result.stdout
    for name in ("config.json", "results.json", "metrics.jsonl", "split.npz", "weights.npz", "checkpoint.pt"):
        assert (out / name).exists(), name
    config = json.load(open(out / "config.json"))
    assert (config["dataset"], config["batch_size"], config["lr"], config["weight_decay"]) == (
        "clothing1m",
        8,
        0.01,
        1e-3,
    )
    assert (config["epochs"], config["milestones"], config["momentum"], config["nesterov"]) == (10, [5], 0.9, False)


def test_a_resnet50_step_at_a_small_size_from_a_saved_state_dict(capsys, clothing, tmp_path):
    """--pretrained FILE: a state dict saved from torchvision's ResNet-50 (random weights here), its 1000-class
    last layer replaced for 14 classes; JVP and double backward agree on it."""
    import torchvision

    root, _ = clothing
    torch.manual_seed(0)
    saved = torchvision.models.resnet50().state_dict()
    torch.save(saved, tmp_path / "r50.pt")
    flags = [
        "--dataset",
        "clothing1m",
        "--data_path",
        root,
        "--image_size",
        "32",
        "--num_meta",
        "28",
        "--batch_size",
        "4",
    ]
    flags += ["--workers", "0", "--pretrained", str(tmp_path / "r50.pt"), "--dry_run"]
    result = run_main(capsys, MW, *flags, "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    config = json.load(open(tmp_path / "run" / "config.json"))
    assert config["arch"] == "resnet50" and config["model_source"]["file"] == str(tmp_path / "r50.pt")
    best = torch.load(tmp_path / "run" / "model_best.pt", weights_only=True)["model"]
    assert best["fc.weight"].shape == (14, 2048) and not torch.equal(best["conv1.weight"], torch.zeros(1))
    from mwnet.method.meta_step import mwnet_step
    from mwnet.models.imagenet import load_pretrained, resnet50
    from mwnet.models.meta_layers import VNet

    grads = []
    for way in ("jvp", "double_backward"):
        torch.manual_seed(1)  # the same new last layer and meta-weight-net for both
        model, vnet = resnet50(14), VNet().double()
        load_pretrained(model, str(tmp_path / "r50.pt"))
        model.double()
        x, y = torch.randn(4, 3, 32, 32, dtype=torch.double), torch.randint(0, 14, (4,))
        opt, vopt = torch.optim.SGD(model.parameters(), 0.01), torch.optim.SGD(vnet.parameters(), 1.0)
        mwnet_step(model, vnet, opt, vopt, x, y, x, y, 0.01, meta_grad=way)
        grads.append(torch.cat([p.grad.flatten() for p in vnet.parameters()]))
    assert grads[1].norm() > 0 and ((grads[0] - grads[1]).norm() / grads[1].norm()).item() < 1e-9


def test_without_a_network_the_imagenet_weights_are_one_line(capsys, clothing, tmp_path, monkeypatch):
    import urllib.error

    import torchvision.models._api as api

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    root, _ = clothing
    flags = ["--dataset", "clothing1m", "--data_path", root, "--image_size", "64", "--num_meta", "28", "--workers", "0"]
    result = run_main(capsys, MW, *flags, "--dry_run", "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "could not get ResNet-50's ImageNet weights", "--pretrained FILE")
    assert not (tmp_path / "run").exists()


def test_batches_follow_from_the_seed_and_position_whatever_the_workers(clothing):
    """The same images, crops and flips for 0 and 2 workers, and after a state_dict round trip mid-stream."""
    root, sets = clothing
    files = ImageFiles(root, *sets["train"], size=32)
    mean, std = MEAN_STD["clothing1m"]
    streams = [StreamLoader(files, 8, "cpu", mean, std, seed=5, workers=w) for w in (0, 2)]
    first = [[s.next_batch() for _ in range(5)] for s in streams]
    for (xa, ya, ia), (xb, yb, ib) in zip(*first, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ia, ib)
    resumed = StreamLoader(files, 8, "cpu", mean, std, seed=5, workers=2)
    resumed.load_state_dict(streams[0].state_dict())
    later = [streams[0].next_batch() for _ in range(12)]  # across the end of a pass (11 batches an epoch)
    for (xa, _, ia), (xb, _, ib) in zip(later, [resumed.next_batch() for _ in range(12)], strict=True):
        assert torch.equal(xa, xb) and torch.equal(ia, ib)
    seen = torch.cat([first[0][i][2] for i in range(5)] + [later[i][2] for i in range(6)])
    assert sorted(seen.tolist()) == list(range(84))  # the first pass: each image once
    assert not torch.equal(later[6][0], first[0][0][0])  # the next pass: another order and other crops


def test_a_stopped_run_resumes_with_the_same_images_and_augmentations(capsys, clothing, tmp_path, monkeypatch):
    root, _ = clothing
    flags = ["--dataset", "clothing1m", "--data_path", root, *SMALL, *SHORT]
    with one_thread():
        assert run_main(capsys, MW, *flags, "--out", str(tmp_path / "whole")).returncode == 0
        stop_at(monkeypatch, 2)
        assert run_main(capsys, MW, *flags, "--out", str(tmp_path / "run")).returncode == 128 + signal.SIGUSR1
        monkeypatch.undo()
        assert run_main(capsys, MW, "--resume", str(tmp_path / "run"), "--workers", "2").returncode == 0
    assert metrics(tmp_path / "run") == metrics(tmp_path / "whole") and len(metrics(tmp_path / "whole")) == 4
    np.testing.assert_array_equal(
        np.load(tmp_path / "run" / "weights.npz")["weight"], np.load(tmp_path / "whole" / "weights.npz")["weight"]
    )


def spoil(root, kind):
    """Damage a copy of the dataset in one way; returns the fragment the refusal names."""

    def edit(name, change):
        path = os.path.join(root, name)
        with open(path) as f:
            lines = f.read().splitlines()
        with open(path, "w") as f:
            f.write("\n".join(change(lines)) + "\n")
        return path

    if kind == "missing file":
        os.remove(os.path.join(root, "clean_val_key_list.txt"))
        return "clean_val_key_list.txt does not exist"
    if kind == "unparsable line":
        path = edit("noisy_label_kv.txt", lambda lines: lines[:3] + ["images/0/x.jpg three"] + lines[3:])
        return f"{path}, line 4: 'images/0/x.jpg three' is not '<image path> <label>'"
    if kind == "label out of range":
        path = edit("clean_label_kv.txt", lambda lines: [lines[0].split()[0] + " 14"] + lines[1:])
        return f"{path}, line 1: label 14 is outside 0-13"
    if kind == "missing image":
        os.remove(os.path.join(root, "images", "1", "test_4.jpg"))
        return "clean_test_key_list.txt: image 5, "
    if kind == "no label":
        path = edit("noisy_train_key_list.txt", lambda lines: lines + ["images/9/not_labelled.jpg"])
        return f"{path}, line 85: images/9/not_labelled.jpg has no label"
    if kind == "random bytes":
        path = os.path.join(root, "noisy_label_kv.txt")
        with open(path, "wb") as f:
            f.write(np.random.default_rng(0).bytes(4096))
        return f"{path} is not a text file of Clothing1M's"
    if kind == "pickle payload":
        path = os.path.join(root, "clean_label_kv.txt")
        with open(path, "wb") as f:
            f.write(pickle.dumps({"labels": Payload(os.path.join(root, "marker"))}, protocol=2))
        return f"{path} is not a text file of Clothing1M's"
    if kind == "empty list":
        path = edit("noisy_train_key_list.txt", lambda lines: [])
        return f"{path} lists no image"
    if kind == "truncated":  # cut in the middle of a line, its label lost
        path = os.path.join(root, "noisy_label_kv.txt")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text[: text.index(" ", len(text) // 2) + 1])
        return f"{path}, line "
    if kind == "path out of the folder":
        path = edit("clean_test_key_list.txt", lambda lines: ["../" + lines[0]] + lines[1:])
        return f"{path}, line 1: ../"
    raise ValueError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "missing file",
        "unparsable line",
        "label out of range",
        "missing image",
        "no label",
        "random bytes",
        "pickle payload",
        "empty list",
        "truncated",
        "path out of the folder",
    ],
)
def test_a_bad_file_is_one_line_naming_it_and_nothing_is_written(capsys, clothing, tmp_path, kind):
    root, _ = clothing
    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    fragment = spoil(str(copy), kind)
    before = snapshot(copy)
    result = run_main(
        capsys, MW, "--dataset", "clothing1m", "--data_path", str(copy), *SMALL, "--out", str(tmp_path / "run")
    )
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "run").exists() and snapshot(copy) == before and not (copy / "marker").exists()


def test_an_undecodable_image_stops_the_run_with_one_line(capsys, clothing, tmp_path):
    root, sets = clothing
    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    bad = copy / sets["train"][0][7]
    bad.write_bytes(b"not a jpeg at all")
    result = run_main(
        capsys,
        MW,
        "--dataset",
        "clothing1m",
        "--data_path",
        str(copy),
        *SMALL,
        *SHORT,
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "run"),
    )
    assert_one_line_error(result, f"cannot decode the image {bad}", "replace the file")


def test_a_selected_meta_set_from_the_noisy_training_list(capsys, clothing, tmp_path):
    """--meta_source selected on Clothing1M: the meta set from the noisy training list (the clean validation
    list unused), its purity measured on the images whose clean label is known."""
    root, sets = clothing
    flags = ["--dataset", "clothing1m", "--data_path", root, *SMALL, "--num_meta", "14", "--meta_source", "selected"]
    result = run_main(capsys, MW, *flags, "--dry_run", "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    record = json.load(open(tmp_path / "run" / "meta_selection.json"))
    assert record["iteration"] == 1 and len(record["positions"]) == 14
    noisy = np.asarray(sets["train"][1])
    assert sorted(noisy[record["positions"]].tolist()) == list(range(14))  # one image a class, by noisy label
    assert 0 < record["known"] < 14 and record["purity"] is not None
    result = run_main(capsys, MW, *flags[:-4], "--num_meta", "140", "--meta_source", "selected", "--dry_run")
    assert_one_line_error(result, "takes 10 training images of each class by their noisy labels, but class")
