"""--dataset folder and the suspect labels: a small ImageFolder and a CSV dataset with known corrupted labels,
trained through both scripts; samples.csv checked against what the test knows and against the final model and
meta-weight-net; every bad input one line, exit 2, nothing written; the suspects command and its contact sheet."""

import csv
import json
import math
import os
import shutil
import signal
import sys

import numpy as np
import pytest
import torch
from conftest import MW, WRN, assert_in_suspect_order, assert_one_line_error, one_thread, run_main, snapshot, stop_at

from benchmarks.bench_label_errors import auroc, precision_at_k
from examples.make_own_data import CLASSES, picture, write_own
from mwnet.data.catalog import spec
from mwnet.data.folder import IMAGE_EXTENSIONS, read_folder
from mwnet.engine.options import name_baseline, parse_args
from mwnet.models.meta_layers import VNet
from mwnet.runs.run_files import config_key, default_run_name, table_config
from mwnet.tools import suspects

SMALL = ["--arch", "smallcnn", "--batch_size", "8", "--workers", "0", "--milestones", "--device", "cpu"]


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    folders = tmp_path_factory.mktemp("folders") / "pets"
    lists = tmp_path_factory.mktemp("lists") / "pets_csv"
    return (str(folders), write_own(str(folders), "imagefolder")), (
        str(lists),
        write_own(str(lists), "csv", meta_per_class=2),
    )


def read_rows(run):
    with open(os.path.join(run, "samples.csv"), newline="") as f:
        return list(csv.DictReader(f))


def check_samples(rows, run, known):
    """One row per training image, ranked, in the order samples.ORDER says, the weight the final
    meta-weight-net's of the loss, the loss the predicted class's where the prediction is the given label."""
    assert sorted(r["path"] for r in rows) == sorted(known) and [int(r["rank"]) for r in rows] == list(
        range(1, len(known) + 1)
    )
    for r in rows:
        assert int(r["given_label"]) == known[r["path"]][0] and r["given_class"] == CLASSES[known[r["path"]][0]]
        if r["predicted_label"] == r["given_label"]:  # then loss = -log(probability); samples.csv prints 6
            # significant digits: loss off by 5e-6 of itself, p by 5e-6 of itself, so -log p by 5e-6; float32 ~1e-7
            p, loss = float(r["probability"]), float(r["loss"])
            assert abs(loss + math.log(p)) <= 5e-6 * loss + 5e-6 + 2e-7
    weight = np.array([float(r["weight"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    assert_in_suspect_order(rows)
    vnet = VNet(1, 100, 1)
    vnet.load_state_dict(torch.load(os.path.join(run, "checkpoint.pt"), weights_only=True)["vnet"])
    # The file's loss is rounded to 6 significant digits (relative error <= 5e-6): V at the two ends of that
    # interval bounds the weight, itself rounded the same way, float32 adding ~1e-7.
    with torch.no_grad():
        ends = [
            vnet(torch.tensor(loss * f, dtype=torch.float32).unsqueeze(1)).squeeze(1).double().numpy()
            for f in (1 - 5e-6, 1 + 5e-6)
        ]
    slack = 5e-6 * np.abs(weight) + 2e-7
    assert (weight >= np.minimum(*ends) - slack).all() and (weight <= np.maximum(*ends) + slack).all()


@pytest.mark.parametrize("layout", ["imagefolder", "csv"])
@pytest.mark.parametrize("script", [MW, WRN])
def test_each_layout_trains_through_each_script_and_ranks_every_training_image(capsys, own, tmp_path, layout, script):
    """The ImageFolder has no meta/: the run selects its meta set; the CSV lists have meta.csv: its clean meta set,
    and the clean labels of two training images in three, which the corrupted column must give."""
    (folders, in_folders), (lists, in_lists) = own
    root, known = (folders, in_folders) if layout == "imagefolder" else (lists, in_lists)
    run = str(tmp_path / "run")
    flags = ["--dataset", "folder", "--data_path", root, "--out", run]
    if script == MW:
        flags += ["--epochs", "3", "--warmup", "1", *SMALL]  # SmallCNN, 5 iterations an epoch
    else:
        flags += ["--iters", "15", "--eval_every", "5", "--warmup", "5", "--layers", "10", "--widen-factor", "1"]
        flags += SMALL[2:]  # its WideResNet
    flags += ["--num_meta", "6"] if layout == "imagefolder" else []
    result = run_main(capsys, script, *flags, cpu=False)
    assert result.returncode == 0, result.stderr
    config = json.load(open(os.path.join(run, "config.json")))
    assert config["folder"]["classes"] == list(CLASSES) and config["folder"]["layout"] == layout
    meta = None if layout == "imagefolder" else 6
    assert config["folder"]["images"] == {"train": 36, "test": 9, "meta": meta} and len(config["folder"]["mean"]) == 3
    rows = read_rows(run)
    check_samples(rows, run, known)
    if layout == "imagefolder":
        assert config["meta_source"] == "selected" and "6 meta selected from them" in result.stdout
        assert {r["corrupted"] for r in rows} == {""} and {r["clean_label"] for r in rows} == {""}  # unknown
        assert [int(r["index"]) for r in sorted(rows, key=lambda r: r["path"])] == list(range(36))  # listing order
        return
    assert config["meta_source"] == "clean" and "6 meta (its meta split)" in result.stdout
    assert "wrong among the 24 with a clean label" in result.stdout
    with open(os.path.join(root, "train.csv"), newline="") as f:
        listed = [row[:3] for row in list(csv.reader(f))[1:]]
    paths, clean_given = [row[0] for row in listed], {row[0]: row[2] for row in listed}
    for r in rows:  # index: the line of train.csv (after its header), from 0
        given, true = known[r["path"]]
        assert int(r["index"]) == paths.index(r["path"])
        if clean_given[r["path"]]:
            assert (r["clean_label"], r["corrupted"]) == (str(true), "1" if given != true else "0")
        else:
            assert (r["clean_label"], r["corrupted"]) == ("", "")
    assert {r["corrupted"] for r in rows} == {"", "0", "1"}


def test_the_suspects_command_prints_the_top_and_draws_them(capsys, own, tmp_path):
    (root, _), _ = own
    run = str(tmp_path / "run")
    flags = ["--dataset", "folder", "--data_path", root, "--num_meta", "6", "--epochs", "2", "--warmup", "1"]
    assert run_main(capsys, MW, *flags, *SMALL, "--out", run, cpu=False).returncode == 0
    rows = read_rows(run)
    capsys.readouterr()
    assert suspects.main([run, "--top", "4"]) == 0
    out = capsys.readouterr().out.splitlines()
    from mwnet.engine.samples import ORDER

    assert f"the 4 most suspect (by {suspects.ORDER_WORDS[ORDER]})" in out[0]
    assert [line.split()[1] for line in out[2:6]] == [r["path"] for r in rows[:4]]
    assert out[-1] == f"contact sheet: {os.path.join(run, 'suspects.png')}"
    with open(os.path.join(run, "suspects.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    moved = str(tmp_path / "moved")
    shutil.copytree(root, moved)
    shutil.rmtree(os.path.join(moved, "train"))  # the images are not where --data_path says
    capsys.readouterr()
    assert suspects.main([run, "--data_path", moved, "--out", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot read the image {os.path.join(moved, rows[0]['path'])}" in err[0]
    assert not (tmp_path / "s.png").exists()


def test_integer_labels_are_class_indices_and_names_sort_as_torchvision_sorts(tmp_path):
    root = tmp_path / "ints"
    os.makedirs(root / "img")
    for i in range(5):
        picture(np.random.default_rng(i), i % 3, 0).save(root / "img" / f"{i}.png")
    (root / "train.csv").write_text("img/0.png,0\nimg/1.png,1\nimg/2.png,2\nimg/3.png,2\n")
    (root / "test.csv").write_text("img/4.png,0\n")  # a test image of its own: one in two splits is refused
    f = read_folder(str(root))
    assert f.classes == ["0", "1", "2"] and f.sets["train"][1].tolist() == [0, 1, 2, 2] and f.layout == "csv"
    (root / "train.csv").write_text("img/0.png,b10\nimg/1.png,b9\nimg/2.png,a\n")
    (root / "test.csv").write_text("img/4.png,a\n")
    assert read_folder(str(root)).classes == ["a", "b10", "b9"]  # sorted as strings, as ImageFolder sorts


def test_two_folders_get_two_run_names_and_one_folder_however_typed_one(own, tmp_path):
    (root, _), (other, _) = own
    names = set()
    for path in (root, root + "/", os.path.relpath(root), other):
        args = parse_args(MW, ["--dataset", "folder", "--data_path", path, "--num_meta", "6"])
        names.add(default_run_name(vars(args), name_baseline(args), spec(args.dataset)))
    assert names == {"resnet32-folder-pets-mwnet-meta6-s1", "resnet32-folder-pets_csv-mwnet-meta6-s1"}
    # the tables and figures: one folder, one configuration over its seeds; two folders (here: two copies of one
    # name, other images), two, whatever their flags
    configs = []
    for digest in ("1f2e3d4c5b6a", "0a9b8c7d6e5f"):
        args = parse_args(MW, ["--dataset", "folder", "--data_path", root, "--num_meta", "6"])
        configs.append({**vars(args), "folder": {"path": os.path.abspath(root)}, "data_fingerprint": digest})
    assert config_key(configs[0]) != config_key(configs[1]) == config_key({**configs[1], "seed": 2})
    assert table_config(configs[0])["data"] == "pets (1f2e3d4c)"


def spoil(root, kind):
    """Damage a copy of a dataset in one way; returns the fragment the refusal names."""

    def edit(name, change):
        path = os.path.join(root, name)
        lines = open(path).read().splitlines()
        open(path, "w").write("\n".join(change(lines)) + "\n")

    if kind == "no test folder":
        shutil.rmtree(os.path.join(root, "test"))
        return "has train/ but no test/"
    if kind == "no test list":
        os.remove(os.path.join(root, "test.csv"))
        return "has train.csv but no test.csv"
    if kind == "neither layout":
        shutil.rmtree(os.path.join(root, "train"))
        return "holds neither train/"
    if kind == "both layouts":
        open(os.path.join(root, "train.csv"), "w").write("x.png,cat\n")
        return "holds both train/ and train.csv"
    if kind == "empty class":
        os.makedirs(os.path.join(root, "train", "zebra"))
        return "train/zebra holds no image"
    if kind == "class only in test":
        os.makedirs(os.path.join(root, "test", "zebra"))
        shutil.copy(
            os.path.join(root, "test", "cat", os.listdir(os.path.join(root, "test", "cat"))[0]),
            os.path.join(root, "test", "zebra"),
        )
        return "class 'zebra' is not among train/'s classes (cat, dog, frog)"
    if kind == "one class":
        for c in ("dog", "frog"):
            shutil.rmtree(os.path.join(root, "train", c))
            shutil.rmtree(os.path.join(root, "test", c))
        return "the training set has one class (cat)"
    if kind == "unknown class":
        edit("test.csv", lambda lines: lines[:2] + [lines[2].rsplit(",", 1)[0] + ",zebra"] + lines[3:])
        return "test.csv, line 3: class 'zebra' is not among the training list's classes"
    if kind == "missing image":
        edit("train.csv", lambda lines: lines[:4] + ["images/train/gone.png,cat,"] + lines[4:])
        return "train.csv, line 5: " + os.path.join(root, "images/train/gone.png") + " does not exist"
    if kind == "path out of the folder":
        edit("train.csv", lambda lines: lines + ["../pets/train/cat/0000.png,cat,"])
        return "leads out of"
    if kind == "absolute path":
        edit("meta.csv", lambda lines: lines + ["/etc/hostname,cat"])
        return "meta.csv, line 8: /etc/hostname leads out of"
    if kind == "bad line":
        edit("train.csv", lambda lines: lines[:2] + ["images/train/0000.png"] + lines[2:])
        return "train.csv, line 3: 'images/train/0000.png' is not path,label"
    if kind == "not text":
        open(os.path.join(root, "test.csv"), "wb").write(bytes(range(256)) * 4)
        return "test.csv is not a text file"
    if kind == "listed twice":  # a header, then images; line 6 names line 3's image again, with another label
        edit("train.csv", lambda lines: lines[:5] + [lines[2].split(",")[0] + ",frog,"] + lines[5:])
        return "train.csv, line 6: images/train/0001.png is listed again (line 3)"
    if kind == "in train and test":
        edit("test.csv", lambda lines: lines + [open(os.path.join(root, "train.csv")).read().splitlines()[1]])
        return "test.csv, line 11: images/train/0000.png is listed also in " + os.path.join(root, "train.csv (line 2)")
    if kind == "a number among names":
        edit("train.csv", lambda lines: lines[:2] + [lines[2].split(",")[0] + ",2,"] + lines[3:])
        return "train.csv, line 3: label '2' is not a class name, where the others are class names"
    if kind == "a fraction among indices":
        index = {"cat": "0", "dog": "1", "frog": "2"}

        def to_indices(lines):
            rows = [line.split(",") for line in lines]
            rows = [rows[0]] + [[r[0], index[r[1]], index.get(r[2], "")] for r in rows[1:]]
            rows[4][1] = "1.5"
            return [",".join(r) for r in rows]

        edit("train.csv", to_indices)
        return (
            "train.csv, line 5: label '1.5' is not a class index (a whole number), where the others are class indices"
        )
    if kind == "a link that loops":
        os.symlink("..", os.path.join(root, "train", "cat", "loop"))
        return (
            os.path.join(root, "train", "cat", "loop", "cat") + " is " + os.path.join(root, "train", "cat") + " again"
        )
    if kind == "two ways to one folder":
        os.symlink(os.path.join("..", "cat"), os.path.join(root, "train", "dog", "alias"))
        return os.path.join(root, "train", "dog", "alias") + " is " + os.path.join(root, "train", "cat") + " again"
    if kind == "not an image":
        path = os.path.join(root, "train", "dog", sorted(os.listdir(os.path.join(root, "train", "dog")))[1])
        open(path, "wb").write(b"not a png at all")
        return f"cannot decode the image {path}"
    raise AssertionError(kind)


FOLDER_FAULTS = ["no test folder", "neither layout", "both layouts", "empty class", "class only in test"]
FOLDER_FAULTS += ["one class", "not an image", "a link that loops", "two ways to one folder"]
CSV_FAULTS = ["no test list", "unknown class", "missing image", "path out of the folder", "absolute path"]
CSV_FAULTS += ["bad line", "not text", "listed twice", "in train and test", "a number among names"]
CSV_FAULTS += ["a fraction among indices"]


@pytest.mark.parametrize("kind", FOLDER_FAULTS + CSV_FAULTS)
def test_a_bad_folder_is_one_line_naming_it_and_nothing_is_written(capsys, own, tmp_path, kind):
    (folders, _), (lists, _) = own
    copy = str(tmp_path / "data")
    shutil.copytree(folders if kind in FOLDER_FAULTS else lists, copy)
    fragment = spoil(copy, kind)
    before = snapshot(copy)
    result = run_main(
        capsys,
        MW,
        "--dataset",
        "folder",
        "--data_path",
        copy,
        "--num_meta",
        "6",
        *SMALL,
        "--out",
        str(tmp_path / "run"),
        cpu=False,
    )
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "run").exists() and snapshot(copy) == before


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--meta_source", "clean"], "holds no clean meta set (meta/); add one, or pass --meta_source selected"),
        (["--num_meta", "7"], "must be a non-negative multiple of the number of classes in"),
        (["--data_path", "/nonexistent/pets"], "--data_path /nonexistent/pets is not a folder"),
    ],
)
def test_a_folder_and_flags_that_do_not_fit_are_one_line(capsys, own, tmp_path, flags, fragment):
    (root, _), _ = own
    base = ["--dataset", "folder", "--data_path", root, "--num_meta", "6", *SMALL, "--out", str(tmp_path / "run")]
    assert_one_line_error(run_main(capsys, MW, *base, *flags, cpu=False), fragment)
    assert not (tmp_path / "run").exists()


def test_an_image_found_bad_in_mid_run_stops_it_with_one_line_and_its_checkpoint_intact(
    capsys, own, tmp_path, monkeypatch
):
    (root, _), _ = own
    copy, run = str(tmp_path / "data"), str(tmp_path / "run")
    shutil.copytree(root, copy)
    flags = ["--dataset", "folder", "--data_path", copy, "--num_meta", "6", "--epochs", "2", "--warmup", "1"]
    flags += ["--checkpoint_every", "0"]
    with one_thread():
        stop_at(monkeypatch, 7)
        assert run_main(capsys, MW, *flags, *SMALL, "--out", run, cpu=False).returncode == 128 + signal.SIGUSR1
        monkeypatch.undo()
    kept = snapshot(run)["checkpoint.pt"]
    moved = os.path.join(copy, "train", "dog", sorted(os.listdir(os.path.join(copy, "train", "dog")))[0])
    os.rename(moved, moved.replace("/dog/", "/frog/"))  # a label changed since the run started
    assert_one_line_error(run_main(capsys, MW, "--resume", run), "is not the data", "--accept_other_data")
    os.rename(moved.replace("/dog/", "/frog/"), moved)
    test_image = os.path.join(copy, "test", "cat", sorted(os.listdir(os.path.join(copy, "test", "cat")))[0])
    open(test_image, "wb").write(b"\x89PNG but no more")  # the test images are read at each evaluation
    result = run_main(capsys, MW, "--resume", run)
    assert_one_line_error(result, f"cannot decode the image {test_image}", "replace the file")
    assert snapshot(run)["checkpoint.pt"] == kept and not os.path.exists(os.path.join(run, "results.json"))


def test_the_benchmark_measures_rankings_as_pairs_counted_one_by_one():
    rng = np.random.default_rng(0)
    suspicion = rng.integers(0, 6, 60).astype(float)  # many ties
    corrupted = rng.random(60) < 0.3
    pairs = [1.0 if a > b else 0.5 if a == b else 0.0 for a in suspicion[corrupted] for b in suspicion[~corrupted]]
    assert math.isclose(auroc(suspicion, corrupted), np.mean(pairs), rel_tol=1e-12)
    k = int(corrupted.sum())
    order = sorted(range(60), key=lambda i: (-suspicion[i], i))
    assert precision_at_k(suspicion, corrupted) == np.mean(corrupted[order[:k]])


def test_evaluate_writes_samples_of_the_runs_own_data_only(capsys, own, tmp_path):
    (root, known), _ = own
    run, other = str(tmp_path / "run"), str(tmp_path / "other")
    flags = ["--dataset", "folder", "--data_path", root, "--num_meta", "6", "--epochs", "2", "--warmup", "1"]
    assert run_main(capsys, MW, *flags, *SMALL, "--out", run, cpu=False).returncode == 0
    shutil.copytree(root, other)
    moved = os.path.join(other, "train", "dog", sorted(os.listdir(os.path.join(other, "train", "dog")))[0])
    os.rename(moved, moved.replace("/dog/", "/frog/"))  # one label changed: other data
    before = snapshot(run)
    result = run_main(capsys, MW, "--evaluate", run, "--data_path", other, cpu=False)
    assert_one_line_error(result, "samples-it10.csv not written: the data under --data_path", "--accept_other_data")
    assert snapshot(run) == before
    result = run_main(capsys, MW, "--evaluate", run, cpu=False)
    assert result.returncode == 0 and f"samples: {os.path.join(run, 'samples-it10.csv')}" in result.stdout
    with open(os.path.join(run, "samples-it10.csv"), "rb") as a, open(os.path.join(run, "samples.csv"), "rb") as b:
        assert a.read() == b.read()  # the final checkpoint's samples are the run's own


def test_a_streamed_training_set_follows_no_augment(own):
    """Crops and flips for training images unless --no-augment, which leaves them the test images' centre crops."""
    from mwnet.engine.components import build_data, run_seeds

    _, (root, _) = own
    for flags, augmented in (([], True), (["--no-augment"], False)):
        args = parse_args(
            MW, ["--dataset", "folder", "--data_path", root, "-b", "8", "--workers", "0", "--device", "cpu", *flags]
        )
        data = build_data(args, torch.device("cpu"), run_seeds(1))
        assert data.train.files.train is augmented and data.meta.files.train is augmented
        assert data.test.files.train is False and data.training_loader().files.train is False


def test_an_imagefolder_reads_as_torchvisions_imagefolder_but_for_hidden_entries(tmp_path):
    """The classes, their indices and the images in their order are torchvision.datasets.ImageFolder's, nested
    folders, upper-case extensions and a file that is no image included; hidden folders and files are left out
    (torchvision would make .ipynb_checkpoints a class and read macOS's ._ files)."""
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import IMG_EXTENSIONS

    assert set(IMAGE_EXTENSIONS) == set(IMG_EXTENSIONS)
    root = tmp_path / "data"
    write_own(str(root), per_class=5, test_per_class=1)
    nested = root / "train" / "dog" / "more" / "deeper"
    os.makedirs(nested)
    picture(np.random.default_rng(0), 1, 0).save(nested / "a.PNG")
    os.makedirs(root / "train" / "dog" / "more-b")  # after more/ but before more/deeper/ in ImageFolder's order
    picture(np.random.default_rng(1), 1, 0).save(root / "train" / "dog" / "more-b" / "b.jpg")
    f = read_folder(str(root))
    reference = ImageFolder(str(root / "train"))
    assert f.classes == reference.classes
    assert [(os.path.join(str(root), p), int(y)) for p, y in zip(*f.sets["train"], strict=True)] == reference.samples
    os.makedirs(root / "train" / ".ipynb_checkpoints")
    (root / "train" / "cat" / "._0000.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    os.makedirs(root / "train" / "cat" / ".cache")
    picture(np.random.default_rng(2), 0, 0).save(root / "train" / "cat" / ".cache" / "x.png")
    again = read_folder(str(root))
    assert again.classes == f.classes and again.sets["train"][0] == f.sets["train"][0]


def test_runs_on_two_folders_stay_apart_in_the_summary_and_the_runner(capsys, own, tmp_path):
    from mwnet.tools import by_config, runner

    (root, _), _ = own
    for name in ("a", "b"):  # the same flags, two folders
        shutil.copytree(root, tmp_path / name)
        flags = ["--dataset", "folder", "--data_path", str(tmp_path / name), "--num_meta", "6", "--epochs", "2"]
        flags += ["--warmup", "1", *SMALL, "--out", str(tmp_path / "runs" / name)]
        assert run_main(capsys, MW, *flags, cpu=False).returncode == 0
    table = by_config.markdown("runs", by_config.run_dirs(str(tmp_path / "runs")))
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].startswith("| data | best | last | n |") and len(rows) == 3
    assert rows[1].startswith("| a (") and rows[2].startswith("| b (") and "corruption" not in table

    def plan(folder, out):  # the runner's decision on a command: the same flags, --data_path `folder`
        flags[flags.index("--data_path") + 1], flags[-1] = str(tmp_path / folder), str(tmp_path / "runs" / out)
        return runner.plan_task(" ".join([sys.executable, MW, *flags]))

    assert plan("a", "a").action == "done"
    other = plan("b", "a")
    assert (
        other.action == "refused" and f"made on another folder ({tmp_path / 'a'} vs {tmp_path / 'b'})" in other.reason
    )
    moved = sorted((tmp_path / "a" / "train" / CLASSES[0]).iterdir())[0]
    moved.rename(tmp_path / "a" / "train" / CLASSES[1] / moved.name)  # one label changed, the same images
    changed = plan("a", "a")
    assert changed.action == "refused" and "its images, labels or classes have changed since" in changed.reason
    shutil.rmtree(tmp_path / "a" / "test")
    assert plan("a", "a").action == "refused" and "has train/ but no test/" in plan("a", "a").reason


def test_pretrained_weights_bring_imagenet_normalisation_and_no_image_is_measured(own, tmp_path, monkeypatch):
    """A folder with --arch resnet50: 224 pixels; with --pretrained, ImageNet's normalisation (the weights'
    own), recorded as such, and no pass over the images to measure one; without, the folder's, measured."""
    from mwnet.data import streamed
    from mwnet.data.catalog import IMAGENET_MEAN_STD
    from mwnet.engine import components
    from mwnet.engine.options import parse_args

    (root, _), _ = own
    weights = tmp_path / "r50.pt"
    weights.write_bytes(b"")  # read only when the model is built
    flags = ["--dataset", "folder", "--data_path", root, "--arch", "resnet50", "--num_meta", "6"]
    measured = components.read_streamed(parse_args(MW, flags))
    assert measured.folder["normalisation"] == "measured on 36 training images"
    assert measured.mean_std != IMAGENET_MEAN_STD
    monkeypatch.setattr(streamed, "measure_mean_std", lambda *a: pytest.fail("measured with --pretrained"))
    args = parse_args(MW, [*flags, "--pretrained", str(weights)])
    given = components.read_streamed(args)
    assert (
        args.image_size == 224 and given.mean_std == IMAGENET_MEAN_STD and given.folder["normalisation"] == "imagenet"
    )
    assert given.folder["mean"] == list(IMAGENET_MEAN_STD[0]) and given.folder["std"] == list(IMAGENET_MEAN_STD[1])
