"""A user's files as they really are: names of any characters the file system allows (accents, symbols, spaces,
commas, quotes, a newline, bytes that are not UTF-8), through both layouts of --dataset folder and Clothing1M's
lists, into samples.csv and the suspects command; CSV lists as spreadsheets save them (a byte-order mark, CRLF,
quoted fields)."""

import csv
import os
import shutil

import pytest
from conftest import MW, run_main, write_clothing1m

from examples.make_own_data import write_own
from mwnet.runs.run_files import read_samples
from mwnet.tools import suspects

SMALL = ["--arch", "smallcnn", "--batch_size", "8", "--workers", "0", "--milestones", "--epochs", "2", "--warmup", "1"]
ODD = ["été ☃ ü.png", 'a, b "quoted".png', "new\nline.png"]
NOT_UTF8 = os.fsdecode(b"caf\xe9 latin-1.png")  # a name from a system that wrote Latin-1


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    folders = str(tmp_path_factory.mktemp("folders") / "pets")
    lists = str(tmp_path_factory.mktemp("lists") / "pets_csv")
    return (folders, write_own(folders, "imagefolder")), (lists, write_own(lists, "csv", meta_per_class=2))


def rename(root, old, name):
    new = os.path.join(os.path.dirname(old), name)
    os.rename(os.path.join(root, old), os.path.join(root, new))
    return new


def trained_paths(capsys, root, out):
    result = run_main(capsys, MW, "--dataset", "folder", "--data_path", root, "--out", out, *SMALL, "--num_meta", "6")
    assert result.returncode == 0, result.stderr
    return set(read_samples(out)["path"])


def test_any_name_in_an_image_folder_trains_and_reaches_samples_and_suspects(capsys, own, tmp_path):
    (folders, known), _ = own
    root = str(tmp_path / "pets")
    shutil.copytree(folders, root)
    paths = sorted(known)
    renamed = {old: rename(root, old, name) for old, name in zip(paths, [*ODD, NOT_UTF8], strict=False)}
    out = str(tmp_path / "run")
    expected = {renamed.get(p, p) for p in paths}
    assert trained_paths(capsys, root, out) == expected  # the names' own bytes, read back
    capsys.readouterr()
    assert suspects.main([out, "--top", str(len(paths)), "--out", str(tmp_path / "sheet.png")]) == 0
    printed = capsys.readouterr().out
    assert "caf\\xe9" in printed and "new\\nline" in printed and "été" in printed  # escaped, never a traceback
    assert (tmp_path / "sheet.png").read_bytes()[:4] == b"\x89PNG"


def test_a_csv_list_as_a_spreadsheet_saves_it_with_odd_names(capsys, own, tmp_path):
    """Excel's "CSV UTF-8": a byte-order mark, CRLF line ends, and quotes around a field with a comma, a quote
    or a newline in it."""
    _, (lists, known) = own
    root = str(tmp_path / "pets_csv")
    shutil.copytree(lists, root)
    with open(os.path.join(root, "train.csv"), newline="") as f:
        rows = list(csv.reader(f))
    for row, name in zip(rows[1:], ODD, strict=False):
        row[0] = rename(root, row[0], name)
    with open(os.path.join(root, "train.csv"), "w", encoding="utf-8-sig", newline="") as f:
        csv.writer(f, lineterminator="\r\n").writerows(rows)
    assert open(os.path.join(root, "train.csv"), "rb").read().startswith(b"\xef\xbb\xbfpath,label")
    assert trained_paths(capsys, root, str(tmp_path / "run")) == {r[0] for r in rows[1:]}


def test_clothing1m_lists_with_an_accented_name(capsys, tmp_path):
    root = str(tmp_path / "clothing1m")
    sets = write_clothing1m(root)
    old = sets["train"][0][0]
    new = rename(root, old, "été_0.jpg")
    for name in ("noisy_label_kv.txt", "clean_label_kv.txt", "noisy_train_key_list.txt"):
        path = os.path.join(root, name)
        text = open(path, encoding="utf-8").read()
        open(path, "w", encoding="utf-8").write(text.replace(f"{old} ", f"{new} ").replace(f"{old}\n", f"{new}\n"))
    out = str(tmp_path / "run")
    flags = ["--dataset", "clothing1m", "--data_path", root, "--arch", "resnet32", "--image_size", "32"]
    flags += ["--num_meta", "28", "--batch_size", "8", "--workers", "0", "--epochs", "0.2", "--milestones"]
    result = run_main(capsys, MW, *flags, "--out", out)
    assert result.returncode == 0, result.stderr
    assert new in read_samples(out)["path"]
