"""The labels a run finds suspect: the top of its samples.csv, printed, and a contact sheet of their images.

    python -m mwnet suspects runs/resnet32-folder-shapes-mwnet-s1            # its samples.csv, the top 20
    python -m mwnet suspects runs/<run>/samples-best-it800.csv --top 40 --out sheet.png
Prints the N most suspect training samples (rank, index or path, given and predicted class, the predicted
class's probability, loss, weight) and, where the clean labels are known, how many of them are corrupted; draws
the N images with their given and predicted labels into a PNG (default: suspects.png beside the samples file).
The images are read from the run's data (config.json's dataset and --data_path, or the --data_path given).
"""

import math
import os
import sys

import numpy as np

from mwnet.cli import Parser
from mwnet.errors import UserError
from mwnet.runs.run_files import (
    CONFIG,
    RESULTS,
    SAMPLE_COLUMNS,
    SAMPLE_ORDERS,
    SAMPLES,
    is_ours,
    iter_samples,
    read_json,
    write_atomic,
)


def parse(argv):
    p = Parser(description="The most suspect labels of a run: printed, and a contact sheet of their images.")
    p.add_argument("run", help=f"a run directory (its {SAMPLES}) or a samples file of one")
    p.add_argument("--top", type=int, default=20, help="how many samples to print and draw (default: 20)")
    p.add_argument(
        "--out", default=None, help="the contact sheet's PNG (default: suspects.png beside the samples file)"
    )
    p.add_argument("--no_sheet", action="store_true", help="print only, draw no contact sheet")
    p.add_argument("--data_path", default=None, help="where the run's images are now (default: the run's own)")
    args = p.parse_args(argv)
    if args.top < 1:
        raise UserError(f"--top must be positive, got {args.top}")
    return args


def _number(text, digits):
    return "-" if text == "" else f"{float(text):.{digits}f}"


# The orders a samples file may be in (run_files.SAMPLE_ORDERS; engine/samples.ORDER picks one), in words.
ORDER_WORDS = {
    "loss": "the final model's loss, highest first",
    "mean_margin": "the mean margin in training, lowest first",
    "mean_loss": "the mean training loss, highest first",
    "early_margin": "the mean margin before the lr drop, lowest first",
    "early_loss": "the mean loss before the lr drop, highest first",
}


class OrderCheck:
    """Whether a file's rows, fed one by one, are sorted as samples.table sorts by a column: the rows with a value
    first, in the column's direction, then those without, by the final loss, highest first."""

    def __init__(self, column):
        self.at, self.loss_at = SAMPLE_COLUMNS.index(column), SAMPLE_COLUMNS.index("loss")
        self.sign, self.holds, self.last, self.empty = SAMPLE_ORDERS[column], True, None, False

    def feed(self, row):
        if not self.holds:
            return
        text = row[self.at]
        if text == "" and not self.empty:
            self.empty, self.last = True, None
        elif text != "" and self.empty:  # a value after an empty cell
            self.holds = False
            return
        try:
            value = float(row[self.loss_at]) if self.empty else self.sign * float(text)
        except ValueError:
            self.holds = False
            return
        self.holds = self.last is None or value <= self.last
        self.last = value


def collect(path, top, declared=None):
    """The file's first `top` rows as {column: list of text}, every row's `corrupted` cell and the column the file
    is sorted by (None: none of SAMPLE_ORDERS): what is printed and drawn, read in little memory whatever the length.
    declared: the column the run says sorted it (results.json's samples_sorted_by), named where the file holds it
    and others hold too (before the first lr drop and over every draw are one window in a run without one)."""
    head, corrupted, at = [], [], SAMPLE_COLUMNS.index("corrupted")
    checks = {column: OrderCheck(column) for column in SAMPLE_ORDERS}
    for row in iter_samples(path):
        if len(head) < top:
            head.append(row)
        corrupted.append(row[at])
        for check in checks.values():
            check.feed(row)
    first = [declared] if declared in checks else []
    sorted_by = next((c for c in [*first, *checks] if checks[c].holds), None)
    return {name: [r[i] for r in head] for i, name in enumerate(SAMPLE_COLUMNS)}, corrupted, sorted_by


def shown(text):
    """A file or class name as a terminal line can hold it: bytes that are not UTF-8 and control characters (a
    newline in a name) escaped, everything else as it is."""
    text = os.fsencode(text).decode("utf-8", "backslashreplace")
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def report(rows, every, top, path, sorted_by="loss"):
    """The lines printed: what the file is, the top rows, and how many of them are known to be corrupted
    (every: each row's corrupted cell); sorted_by: the column the file was found sorted by (None: none known)."""
    n = len(every)
    if sorted_by:
        lines = [f"{path}: {n} training samples; the {min(top, n)} most suspect (by {ORDER_WORDS[sorted_by]}):"]
    else:
        lines = [
            f"{path}: {n} training samples; its first {min(top, n)} (the file is in none of samples.csv's orders):"
        ]
    where = "path" if rows["path"][0] else "index"
    extra = sorted_by if sorted_by and sorted_by != "loss" else None  # the column that sorted the file, shown
    head = f"{'rank':>6}  {where:<28} {'given':<16} {'predicted':<16} {'prob':>5} {'loss':>7} {'weight':>7}"
    head += f" {extra:>12}" if extra else ""
    lines.append(f"{head} {'corrupted':>9}")
    for i in range(min(top, n)):
        corrupted = {"1": "yes", "0": "no", "": "?"}[rows["corrupted"][i]]
        name = shown(rows[where][i])
        name = name if len(name) <= 28 else "..." + name[-25:]
        given, predicted = shown(rows["given_class"][i])[:16], shown(rows["predicted_class"][i])[:16]
        lines.append(
            f"{rows['rank'][i]:>6}  {name:<28} {given:<16} {predicted:<16}"
            f" {_number(rows['probability'][i], 2):>5} {_number(rows['loss'][i], 3):>7}"
            f" {_number(rows['weight'][i], 3):>7}"
            + (f" {_number(rows[extra][i], 3):>12}" if extra else "")
            + f" {corrupted:>9}"
        )
    known = np.asarray([c != "" for c in every])
    if known.any():
        corrupted = np.asarray([c == "1" for c in every])
        k = int(corrupted.sum())
        listed = min(top, n)
        lines.append(
            f"corrupted: {int(corrupted[:listed].sum())} of these {listed}; {k} in all (clean label known for {int(known.sum())}),"
            f" {int(corrupted[:k].sum())} of them among the {k} most suspect"
        )
    return lines


def images(config, rows, count, data_path):
    """The first `count` samples' images as HxWx3 uint8 arrays, read from the run's data."""
    from mwnet.data.catalog import spec

    dataset = config.get("dataset")
    root = data_path or config.get("data_path") or "./data"
    if spec(dataset).streamed:
        from mwnet.data.images import UnreadableImage, read_rgb

        out = []
        for rel in rows["path"][:count]:
            path = os.path.join(root, rel)
            try:
                out.append(np.asarray(read_rgb(path)))
            except UnreadableImage as e:
                raise UserError(
                    f"cannot read the image {path} ({e.kind}); pass --data_path where the run's images are, or --no_sheet"
                ) from None
        return out
    from mwnet.data.catalog import default_root, load_arrays

    train, _, _ = load_arrays(dataset, default_root(dataset, root), True, False)
    return [train[int(i)] for i in rows["index"][:count]]


def draw(pictures, rows, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(5, len(pictures))
    lines = math.ceil(len(pictures) / cols)
    fig, axes = plt.subplots(lines, cols, figsize=(1.6 * cols, 1.9 * lines), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    colours = {"1": "tab:red", "0": "tab:green", "": "black"}
    for i, (ax, picture) in enumerate(zip(axes.flat, pictures, strict=False)):
        ax.imshow(picture, interpolation="nearest")
        title = f"#{rows['rank'][i]} given {shown(rows['given_class'][i])[:14]}\npredicted {shown(rows['predicted_class'][i])[:14]}"
        ax.set_title(f"{title} {_number(rows['probability'][i], 2)}", fontsize=6.5, color=colours[rows["corrupted"][i]])
    known = any(c != "" for c in rows["corrupted"][: len(pictures)])
    note = "; red: label known corrupted, green: known clean" if known else ""
    fig.suptitle(f"the {len(pictures)} most suspect labels{note}", fontsize=7)
    fig.tight_layout()
    write_atomic(out, lambda tmp: fig.savefig(tmp, format="png", dpi=150))
    plt.close(fig)


def main(argv=None):
    try:
        args = parse(sys.argv[1:] if argv is None else argv)
        path = os.path.join(args.run, SAMPLES) if os.path.isdir(args.run) else args.run
        folder = os.path.dirname(os.path.abspath(path))
        results = read_json(os.path.join(folder, RESULTS)) if os.path.basename(path) == SAMPLES else None
        rows, every, sorted_by = collect(path, args.top, (results or {}).get("samples_sorted_by"))
        for line in report(rows, every, args.top, path, sorted_by):
            print(line)
        if args.no_sheet:
            return 0
        config = read_json(os.path.join(folder, CONFIG))
        if config is None:
            raise UserError(f"no {CONFIG} beside {path}: the images cannot be found; pass --no_sheet")
        out = args.out or os.path.join(os.path.dirname(path), "suspects.png")
        if args.out is None and not is_ours(folder):
            raise UserError(f"{folder} is not a run directory of this project; pass --out for the contact sheet")
        draw(images(config, rows, len(rows["rank"]), args.data_path), rows, out)
        print(f"contact sheet: {out}")
        return 0
    except UserError as e:
        sys.stderr.write(f"suspects: error: {e}\n")
        return 2
