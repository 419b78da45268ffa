"""--dataset folder: a user's own labelled images, read and checked before anything is written.

--data_path DIR holds one of two layouts (README, "Your own data"):
    ImageFolder   DIR/train/<class>/*, DIR/test/<class>/*, optionally DIR/meta/<class>/* (a clean meta set);
                  files with torchvision's image extensions, found at any depth below the class folder;
                  names starting with a dot (.ipynb_checkpoints/, macOS's ._ files) left out
    CSV lists     DIR/train.csv, DIR/test.csv, optionally DIR/meta.csv: lines "path,label[,clean_label]", an
                  optional header "path,label[,clean_label]", paths relative to DIR, a label a class name or
                  an index; clean_label (empty where unknown) only to measure the method, never to train
Class indices follow torchvision's ImageFolder: the training classes' names sorted; in CSV lists whose
training labels are all whole numbers, the numbers themselves (0 to the largest). Every problem is one line
naming the file and line or the folder: a missing split, an empty class, a class in test/ or meta/ that the
training set lacks, an unknown class in a CSV, a path that does not exist or leads out of DIR.
"""

import csv
import hashlib
import json
import os
from dataclasses import dataclass

import numpy as np

from mwnet.data.files import check_listed
from mwnet.errors import UserError

# torchvision.datasets.folder.IMG_EXTENSIONS (compared in lower case, as there)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SPLITS = ("train", "test", "meta")
HEADER = ["path", "label", "clean_label"]
STATS_SAMPLE = 1000  # training images the normalisation is measured on (evenly spaced in the list)


@dataclass
class Folder:
    root: str
    layout: str  # "imagefolder" or "csv"
    classes: list  # index -> name
    sets: dict  # "train", "test", "meta" (or None): (paths relative to root, labels as indices)
    train_clean: np.ndarray  # the clean label of each training image where a CSV gives it, else -1

    def describe(self):
        """What config.json records: the layout, the classes, the images per split, the digest of the lists."""
        counts = {name: (None if s is None else len(s[0])) for name, s in self.sets.items()}
        where = {"path": os.path.abspath(self.root), "layout": self.layout}
        return {**where, "classes": self.classes, "images": counts, "lists": self.lists_digest()}

    def lists_digest(self):
        """Of what read_folder found: the classes, every split's paths and labels, the clean labels. Cheap (no
        image is opened): the runner compares it with a run's to tell whether the run was made on this folder."""
        h = hashlib.sha256(json.dumps(self.classes).encode())
        for name in SPLITS:
            paths, labels = self.sets.get(name) or ((), ())
            h.update(json.dumps([name, len(paths)]).encode())
            for path, label in zip(paths, labels, strict=True):
                h.update(json.dumps([str(path), int(label)]).encode())
        h.update(np.ascontiguousarray(self.train_clean, dtype=np.int64).tobytes())
        return h.hexdigest()[:16]


def differs(record, root):
    """Why a run whose config.json records the folder `record` was not made on the folder `root` as it is now
    (another folder, or other lists or labels), or None; a folder that cannot be read: its one line."""
    folder, record = read_folder(root), record or {}
    if record.get("path") != os.path.abspath(root):
        return f"another folder ({record.get('path')} vs {os.path.abspath(root)})"
    if record.get("lists") != folder.lists_digest():
        return f"{root} as it was: its images, labels or classes have changed since"
    return None


def layout(root):
    """ "imagefolder" or "csv", by what DIR holds."""
    if not os.path.isdir(root):
        raise UserError(
            f"--data_path {root} is not a folder; --dataset folder reads a folder of train/ and test/ (or train.csv and test.csv)"
        )
    folders, lists = os.path.isdir(os.path.join(root, "train")), os.path.isfile(os.path.join(root, "train.csv"))
    if folders and lists:
        raise UserError(f"{root} holds both train/ and train.csv; keep one layout (README, 'Your own data')")
    if not (folders or lists):
        raise UserError(
            f"{root} holds neither train/ (class folders) nor train.csv (a list of path,label); see README, 'Your own data'"
        )
    return "imagefolder" if folders else "csv"


def has_meta(root):
    """Whether DIR holds a clean meta set (meta/ or meta.csv): without one a run selects its meta set."""
    try:
        kind = layout(root)
    except UserError:
        return False  # the run says what is wrong when it reads the folder
    return os.path.isdir(os.path.join(root, "meta")) if kind == "imagefolder" else os.path.isfile(_csv(root, "meta"))


def _csv(root, split):
    return os.path.join(root, f"{split}.csv")


def _is_image(name):
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _class_folders(folder):
    try:
        return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    except OSError as e:
        raise UserError(f"cannot read {folder} ({e.strerror or e}); check the folder") from None


def _images_under(root, folder, seen):
    """The image files below `folder`, relative to root, in torchvision's ImageFolder order (its folders as
    sorted(os.walk(...)) gives them, each one's files sorted); hidden folders and files left out. Links to
    folders are followed, as ImageFolder does, but a folder reached a second time (a link that loops back, or two
    ways to one folder: the same images twice, perhaps under two labels) is refused. seen: {real path: path}."""
    visited, top = [], os.path.join(root, folder)
    for here, dirs, files in os.walk(top, followlinks=True):  # checked as it goes: a loop is never gone round
        dirs.sort()
        below = os.path.relpath(here, top)
        if below != "." and any(part.startswith(".") for part in below.split(os.sep)):
            dirs[:] = []
            continue
        real = os.path.realpath(here)
        if real in seen:
            raise UserError(
                f"{here} is {seen[real]} again, through a link (a loop, or two ways to one folder); remove the link, or copy the images that belong to both classes"
            )
        seen[real] = here
        visited.append((here, files))
    return [
        os.path.relpath(os.path.join(h, f), root) for h, files in sorted(visited) for f in sorted(files) if _is_image(f)
    ]


def _read_imagefolder(root):
    train_dir = os.path.join(root, "train")
    classes = _class_folders(train_dir)
    if not classes:
        raise UserError(f"{train_dir} holds no class folder; put each class's images in train/<class name>/")
    sets = {}
    for split in SPLITS:
        folder = os.path.join(root, split)
        if not os.path.isdir(folder):
            if split == "test":
                raise UserError(f"{root} has train/ but no test/; add test/<class name>/ folders of test images")
            sets[split] = None
            continue
        names = _class_folders(folder)
        unknown = [c for c in names if c not in classes]
        if unknown:
            raise UserError(
                f"{os.path.join(folder, unknown[0])}: class {unknown[0]!r} is not among train/'s classes ({_few(classes)}); train/ must hold every class"
            )
        if not names:
            raise UserError(f"{folder} holds no class folder; put each class's images in {split}/<class name>/")
        paths, labels, seen = [], [], {}
        for c in names:
            found = _images_under(root, os.path.join(split, c), seen)
            if not found:
                raise UserError(
                    f"{os.path.join(folder, c)} holds no image ({', '.join(IMAGE_EXTENSIONS)}); add images or remove the folder"
                )
            paths += found
            labels += [classes.index(c)] * len(found)
        sets[split] = (paths, np.asarray(labels, dtype=np.int64))
    return classes, sets, np.full(len(sets["train"][0]), -1, dtype=np.int64)


def _few(names, n=5):
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _rows(path):
    """(line number, [path, label, clean label or ""]) of a CSV list; a header line is skipped."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:  # a spreadsheet's byte-order mark, if any, dropped
            lines = list(csv.reader(f))
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a text file; it must hold lines of path,label") from None
    except csv.Error as e:
        raise UserError(f"{path} is not a readable CSV ({e}); it must hold lines of path,label") from None
    except OSError as e:
        raise UserError(f"cannot read {path} ({e.strerror or e}); check the file") from None
    rows = []
    for number, fields in enumerate(lines, 1):
        fields = [f.strip() for f in fields]
        if not any(fields):
            continue
        if number == 1 and [f.lower() for f in fields] == HEADER[: len(fields)] and len(fields) >= 2:
            continue
        if len(fields) not in (2, 3) or not fields[0] or not fields[1]:
            raise UserError(
                f"{path}, line {number}: {','.join(fields)[:80]!r} is not path,label (or path,label,clean_label)"
            )
        rows.append((number, fields + [""] * (3 - len(fields))))
    if not rows:
        raise UserError(f"{path} lists no image; it must hold lines of path,label")
    return rows


def _check_path(root, path, where):
    if os.path.isabs(path) or ".." in path.replace("\\", "/").split("/"):
        raise UserError(f"{where}: {path[:80]} leads out of {root}; list paths relative to it, inside it")


def _read_csv(root):
    files = {split: _csv(root, split) for split in SPLITS}
    if not os.path.isfile(files["test"]):
        raise UserError(f"{root} has train.csv but no test.csv; add a list of test images (path,label)")
    rows = {split: _rows(f) if os.path.isfile(f) else None for split, f in files.items()}
    given = [r[1][1] for r in rows["train"]]
    _check_label_kinds(rows["train"], files["train"])
    if all(_is_index(label) for label in given):  # class indices
        largest = max(int(label) for label in given)
        classes = [str(i) for i in range(largest + 1)]
        present = {int(label) for label in given}
        missing = [i for i in range(largest + 1) if i not in present]
        if missing:
            raise UserError(
                f"{files['train']}: class {missing[0]} has no image, though its labels go up to {largest}; every class index below the largest needs training images"
            )
    else:
        classes = sorted(set(given))
    index = {name: i for i, name in enumerate(classes)}
    _check_listed_once([(files[s], [(n, f[0]) for n, f in r]) for s, r in rows.items() if r is not None])
    sets, train_clean = {}, None
    for split, listed in rows.items():
        if listed is None:
            sets[split] = None
            continue
        paths, labels, clean = [], [], []
        for number, (path, label, clean_label) in listed:
            where = f"{files[split]}, line {number}"
            _check_path(root, path, where)
            for value in (label, clean_label) if clean_label else (label,):
                if value not in index:
                    raise UserError(
                        f"{where}: class {value!r} is not among the training list's classes ({_few(classes)}); fix the label or add the class to train.csv"
                    )
            paths.append(path)
            labels.append(index[label])
            clean.append(index[clean_label] if clean_label else -1)
        _check_exist(root, paths, [n for n, _ in listed], files[split])
        sets[split] = (paths, np.asarray(labels, dtype=np.int64))
        if split == "train":
            train_clean = np.asarray(clean, dtype=np.int64)
    return classes, sets, train_clean


def _is_index(label):
    return label.isascii() and label.isdigit()


def _check_label_kinds(listed, list_path):
    """Labels are all class indices (whole numbers) or all class names: one of another kind among them (1.5
    among 0, 1, 2; 3 among cat, dog) would make every label a name, or a number a class of its own."""
    indices = [_is_index(label) for _, (_, label, _) in listed]
    if any(indices) and not all(indices):
        most_are_indices = indices.count(True) > len(indices) // 2  # the first of the other kind is the odd one
        number, (_, label, _) = next(r for r, i in zip(listed, indices, strict=True) if i != most_are_indices)
        kind = "a class index (a whole number)" if most_are_indices else "a class name"
        others = "class indices (whole numbers)" if most_are_indices else "class names"
        raise UserError(
            f"{list_path}, line {number}: label {label!r} is not {kind}, where the others are {others}; give every label the same way"
        )


def _check_listed_once(listed_at):
    """Each image in one split once: [(list file, [(line, path)])] per split; the same path twice (after
    normalising) is refused, and an image in two splits (a test image trained on) above all."""
    first = {}
    for list_path, lines in listed_at:
        for number, path in lines:
            key = os.path.normpath(path)
            if key in first:
                there, at = first[key]
                where = "again" if there == list_path else f"also in {there}"
                raise UserError(
                    f"{list_path}, line {number}: {path[:80]} is listed {where} (line {at}); list each image once, in one split"
                )
            first[key] = (list_path, number)


def _check_exist(root, paths, numbers, list_path):
    """Every listed image exists (a folder of that name is found later: it cannot be decoded)."""
    check_listed(root, paths, lambda i, path: f"{list_path}, line {numbers[i]}: {path} does not exist")


def read_folder(root):
    """The user's folder, every check made: a Folder."""
    kind = layout(root)
    classes, sets, train_clean = _read_imagefolder(root) if kind == "imagefolder" else _read_csv(root)
    if len(classes) < 2:
        raise UserError(f"{root}: the training set has one class ({classes[0]}); a classifier needs two or more")
    return Folder(root, kind, classes, sets, train_clean)


def sample_positions(n, most=STATS_SAMPLE):
    """Which training images the normalisation is measured on: `most` evenly spaced through the list."""
    return np.unique(np.linspace(0, n - 1, min(n, most)).round().astype(np.int64))
