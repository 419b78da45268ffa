"""A small labelled image folder with known wrong labels, to try --dataset folder and the suspects command on.

    python examples/make_own_data.py /tmp/pets                  # ImageFolder: train/<class>/, test/<class>/
    python examples/make_own_data.py /tmp/pets_csv --layout csv --meta_per_class 2   # train.csv, test.csv, meta.csv

Three classes (cat, dog, frog), each image noise whose dominant colour channel is its true class, saved as PNG
in RGB, grey, RGBA or palette mode (a user's folder holds all of them). Every fourth training image of each
class is labelled as the next class: its folder (ImageFolder) or its label (CSV) is wrong; mislabelled.txt lists
them. The CSV gives the clean label of two training images in three (a third column), as a verified subset
would; ImageFolder cannot.
The test suite builds its datasets with this (tests/test_own_data.py).
"""

import argparse
import csv
import os

import numpy as np
from PIL import Image

CLASSES = ("cat", "dog", "frog")  # sorted, as ImageFolder sorts: indices 0, 1, 2


def picture(rng, label, i):
    """An image whose dominant channel is its true class, in one of four modes."""
    pixels = rng.integers(0, 60, (20 + i % 3, 24, 3), dtype=np.uint8)
    pixels[..., label] += 150
    return Image.fromarray(pixels).convert(("RGB", "L", "RGBA", "P")[(i // 3) % 4])


def write_own(root, layout="imagefolder", per_class=12, test_per_class=3, meta_per_class=0, seed=0):
    """Writes the dataset under root; returns {training image path relative to root: (given label, true label)}."""
    rng = np.random.default_rng(seed)
    train, rows = {}, {"train": [], "test": [], "meta": []}
    for split, n in {"train": per_class, "test": test_per_class, "meta": meta_per_class}.items():
        for c in range(len(CLASSES)):
            for j in range(n):
                i = len(rows[split]) + c * 1000
                given = (c + 1) % len(CLASSES) if split == "train" and j % 4 == 0 else c
                folder = (
                    os.path.join(split, CLASSES[given]) if layout == "imagefolder" else os.path.join("images", split)
                )
                rel = os.path.join(folder, f"{i:04d}.png")
                os.makedirs(os.path.join(root, folder), exist_ok=True)
                picture(rng, c, i).save(os.path.join(root, rel))
                if split == "train":
                    train[rel] = (given, c)
                    rows[split].append([rel, CLASSES[given], CLASSES[c] if j % 3 else ""])
                else:
                    rows[split].append([rel, CLASSES[given]])
    with open(os.path.join(root, "mislabelled.txt"), "w") as f:  # the answer, to check a run's suspects against
        f.write("".join(f"{rel}\n" for rel, (given, true) in train.items() if given != true))
    if layout == "imagefolder":  # a file that is no image: ImageFolder leaves it out, so does --dataset folder
        with open(os.path.join(root, "train", "cat", "notes.txt"), "w") as f:
            f.write("not an image\n")
    else:
        for split, lines in rows.items():
            if lines:
                with open(os.path.join(root, f"{split}.csv"), "w", newline="") as f:
                    writer = csv.writer(f)
                    writer.writerow(["path", "label", "clean_label"][: len(lines[0])])
                    writer.writerows(lines)
    return train


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", help="the folder to write (it must not exist)")
    p.add_argument("--layout", default="imagefolder", choices=("imagefolder", "csv"))
    p.add_argument("--per_class", type=int, default=12, help="training images per class (default: 12)")
    p.add_argument("--test_per_class", type=int, default=3, help="test images per class (default: 3)")
    p.add_argument("--meta_per_class", type=int, default=0, help="clean meta images per class (default: none)")
    args = p.parse_args(argv)
    if os.path.exists(args.root):
        raise SystemExit(f"{args.root} exists; name a new folder")
    train = write_own(args.root, args.layout, args.per_class, args.test_per_class, args.meta_per_class)
    wrong = sum(given != true for given, true in train.values())
    print(f"wrote {args.root}: {len(train)} training images of {len(CLASSES)} classes, {wrong} of them mislabelled")


if __name__ == "__main__":
    main()
