"""The laptop protocol's ablations: one factor at a time toward the paper's regime (docs/results-fashion-mnist.md,
"Where the paper's claims hold"), each variant a row of flags, beside the laptop table's own rows as the control.

    python -m mwnet.tools.ablations                   # 'folder flags...' per run, in the order they are run
    python -m mwnet.tools.ablations --rows mwnet_cwarm --settings "flip2 0.4" --seeds "1"

scripts/table_laptop_ablations.sh runs those lines; summarize.py prints the table (`markdown`), each run checked
against its row's flags: a run whose configuration is not exactly its row's is left out and named.
"""

import collections
import glob
import os

from mwnet.cli import Parser
from mwnet.engine.options import parse_args
from mwnet.errors import UserError
from mwnet.runs.run_files import numbers_config, read_run
from mwnet.runs.separation import auroc
from mwnet.tools.by_config import fmt_mean, mean_std, why_unfinished

TABLE = "fashionmnist_laptop_ablations"
CONTROL_TABLE = "fashionmnist_laptop"  # the control rows are the laptop table's runs, read where they are
DATASET = "fashionmnist"
SETTINGS = [("unif", "0.6"), ("flip2", "0.4"), ("flip", "0.4")]
# row: (label, flags beside --protocol laptop and the setting's noise), in the table's order; the control first.
CONTROL = {
    "mwnet": ("MW-Net (the laptop protocol)", ["--method", "mwnet"]),
    "mwnet_selected": ("MW-Net, meta set selected", ["--method", "mwnet", "--meta_source", "selected"]),
    "l2rw": ("L2RW", ["--method", "l2rw"]),
    "erm": ("Plain training", ["--method", "erm"]),
}
# 4x the laptop's training images, the meta set kept at 2 % of them (still from outside), the laptop's schedule:
# chosen by plain training's curve alone, before any MW-Net run (docs/results-fashion-mnist.md, "Where the paper's
# claims hold": at 40 epochs it memorises, at 20 it does not).
LARGER = ["--train_subset", "20000", "--num_meta", "400"]
SGD = ["--vnet_optimizer", "sgd", "--vnet_wd", "5e-4"]  # the WRN script's meta-net SGD (lr 1e-3, momentum 0.9)
VARIANTS = {
    "mwnet_norm": ("MW-Net, weights normalised by their sum", ["--method", "mwnet", "--normalize_weights"]),
    "mwnet_sgd": ("MW-Net, meta-weight-net by SGD", ["--method", "mwnet", *SGD]),
    "mwnet_norm_sgd": ("MW-Net, both (the WRN script's way)", ["--method", "mwnet", "--normalize_weights", *SGD]),
    "mwnet_meta1000": ("MW-Net, 1,000 clean meta images", ["--method", "mwnet", "--num_meta", "1000"]),
    "l2rw_meta1000": ("L2RW, 1,000 clean meta images", ["--method", "l2rw", "--num_meta", "1000"]),
    "mwnet_cwarm": (
        "MW-Net, clean meta set after 10 epochs of plain training",
        ["--method", "mwnet", "--clean_warmup"],
    ),
    "mwnet_inside": ("MW-Net, clean meta set from inside the 5,000", ["--method", "mwnet", "--meta_from", "inside"]),
    "mwnet_aug": ("MW-Net, crop and flip", ["--method", "mwnet", "--augment"]),
    "l2rw_aug": ("L2RW, crop and flip", ["--method", "l2rw", "--augment"]),
    "erm_aug": ("Plain training, crop and flip", ["--method", "erm", "--augment"]),
    "mwnet_20k": ("MW-Net, 20,000 training images (400 meta)", ["--method", "mwnet", *LARGER]),
    "erm_20k": ("Plain training, 20,000 training images", ["--method", "erm", *LARGER]),
    "l2rw_20k": ("L2RW, 20,000 training images (400 meta)", ["--method", "l2rw", *LARGER]),
    "mwnet_aug_cwarm": (
        "MW-Net, crop and flip and the clean warm-up",
        ["--method", "mwnet", "--augment", "--clean_warmup"],
    ),
    "mwnet_20k_aug_cwarm": (
        "MW-Net, 20,000 images, crop and flip and the clean warm-up (the three that helped)",
        ["--method", "mwnet", "--augment", "--clean_warmup", *LARGER],
    ),
    "l2rw_20k_aug_cwarm": (
        "L2RW, 20,000 images, crop and flip and the clean warm-up (MW-Net's three, for L2RW)",
        ["--method", "l2rw", "--augment", "--clean_warmup", *LARGER],
    ),
    "erm_20k_aug": ("Plain training, 20,000 images, crop and flip", ["--method", "erm", "--augment", *LARGER]),
}
# Rows run under some settings only, the other cells saying so: L2RW on 20,000 images under the flip noises, where
# the paper's claim of MW-Net above L2RW was in question, and L2RW and plain training given MW-Net's three there.
FLIPS = [("flip2", "0.4"), ("flip", "0.4")]
ONLY = {"l2rw_20k": FLIPS, "l2rw_20k_aug_cwarm": FLIPS, "erm_20k_aug": FLIPS}
# The order the runs are made in: the variants most likely to explain the flip-noise result first.
RUN_ORDER = ["mwnet_norm_sgd", "mwnet_cwarm", "mwnet_inside", "mwnet_meta1000", "mwnet_norm", "mwnet_sgd"]
RUN_ORDER += ["l2rw_meta1000", "mwnet_aug", "l2rw_aug", "erm_aug", "erm_20k", "mwnet_20k", "mwnet_aug_cwarm"]
RUN_ORDER += ["mwnet_20k_aug_cwarm", "l2rw_20k", "l2rw_20k_aug_cwarm", "erm_20k_aug"]
ROWS = {**CONTROL, **VARIANTS}


def settings_of(row):
    return ONLY.get(row, SETTINGS)


def cell_name(kind, p):
    return f"{kind}_p{p}"


def expected_argv(row, kind, p, seed):
    return [
        "--protocol",
        "laptop",
        "--corruption_type",
        kind,
        "--corruption_prob",
        p,
        "--seed",
        str(seed),
        *ROWS[row][1],
    ]


def commands(rows, settings, seeds):
    """(run folder under RUNS, flags) per run: seed by seed, row by row, setting by setting."""
    out = []
    for seed in seeds:
        for row in rows:
            for kind, p in [s for s in settings if s in settings_of(row)]:
                folder = f"{TABLE}/{DATASET}/{cell_name(kind, p)}/{row}/seed{seed}"
                out.append((folder, expected_argv(row, kind, p, seed)))
    return out


def run_path(runs, row, cell, seed):
    table = CONTROL_TABLE if row in CONTROL else TABLE
    return os.path.join(runs, table, DATASET, cell, row, f"seed{seed}")


def why_left_out(run, row, kind, p):
    """None where the run counts in its cell: finished, and its configuration exactly its row's flags."""
    reason = why_unfinished(run)
    if reason:
        return reason
    seed = run.config.get("seed")
    expected = numbers_config(vars(parse_args("MW-Net.py", expected_argv(row, kind, p, seed))))
    found = numbers_config(run.config)
    differ = sorted(k for k in set(expected) | set(found) if expected.get(k) != found.get(k))
    return f"its flags are not its row's ({', '.join(differ[:4])})" if differ else None


def separation_at_end(run):
    """The final model's training losses and weights (weights.npz) as scores of a corrupted label: AUROC."""
    w = run.weights
    noisy, clean = w["is_noisy"], w["clean_labels"] == w["noisy_labels"]
    return auroc(w["loss"].astype(float), noisy, clean), auroc(-w["weight"].astype(float), noisy, clean)


def cell_stats(group):
    """Mean over the seeds of the accuracies, the end's loss and weight AUROC, the highest loss AUROC over the
    evaluations (recorded by runs made since it exists), the clean and noisy weights and V at the grid's ends."""
    stats = {"n": len(group)}
    for key in ("best_test_acc", "last_test_acc"):
        stats[key] = mean_std([r.results[key] for r in group])
    ends = [separation_at_end(r) for r in group]
    stats["loss_auroc"] = mean_std([a for a, _ in ends if a is not None])
    stats["weight_auroc"] = mean_std([b for _, b in ends if b is not None])
    peaks = [max(m["loss_auroc"] for m in r.metrics) for r in group if all(m.get("loss_auroc") for m in r.metrics)]
    stats["peak_auroc"] = mean_std(peaks) if len(peaks) == len(group) else (None, None)
    last = [r.metrics[-1] for r in group]
    for key in ("weight_clean", "weight_noisy"):
        stats[key] = mean_std([m[key] for m in last if m.get(key) is not None])
    curves = [m["vnet_curve"] for m in last if m.get("vnet_curve")]
    stats["v_low"], stats["v_high"] = (mean_std([c[0] for c in curves]), mean_std([c[-1] for c in curves]))
    return stats


def collect(runs):
    """{(row, cell): [run, ...]} of the runs that count, and [(path, reason)] of those left out."""
    found, left_out = collections.defaultdict(list), []
    for row in ROWS:
        for kind, p in settings_of(row):
            cell = cell_name(kind, p)
            for path in sorted(glob.glob(run_path(runs, row, cell, "*"))):
                try:
                    run = read_run(path)
                    reason = why_left_out(run, row, kind, p)
                except UserError as e:
                    reason = f"unreadable: {e}"
                if reason:
                    left_out.append((path, reason))
                else:
                    found[(row, cell)].append(run)
    return found, left_out


def _fmt(stat, digits=2):
    mean, _ = stat
    return "-" if mean is None else f"{mean:.{digits}f}"


def markdown(runs):
    """The ablation table and its separation block, every row and setting (missing where no run counts)."""
    found, left_out = collect(runs)
    cells = [cell_name(k, p) for k, p in SETTINGS]
    header = ["| | " + " | ".join(cells) + " |", "|---" * (len(cells) + 1) + "|"]
    title = "Fashion-MNIST, the laptop protocol, one factor at a time (the control rows: the laptop table's runs)"
    acc, sep = [f"### {title}", "", *header], [*header]
    for row, (label, _) in ROWS.items():
        acc_cells, sep_cells = [], []
        for cell in cells:
            group = found.get((row, cell), [])
            if cell not in [cell_name(k, p) for k, p in settings_of(row)]:
                acc_cells.append("not run")
                sep_cells.append("not run")
                continue
            if not group:
                acc_cells.append("missing")
                sep_cells.append("missing")
                continue
            s, n = cell_stats(group), len(group)
            best, last = fmt_mean(*s["best_test_acc"], n), fmt_mean(*s["last_test_acc"], n)
            acc_cells.append(f"best {best}, last {last} (n={n})")
            text = f"loss {_fmt(s['loss_auroc'], 3)} (peak {_fmt(s['peak_auroc'], 3)}), weight {_fmt(s['weight_auroc'], 3)}"
            if s["weight_clean"][0] is not None and not row.startswith("erm"):
                text += f"; clean {_fmt(s['weight_clean'], 3)} / noisy {_fmt(s['weight_noisy'], 3)}"
            if s["v_low"][0] is not None:
                text += f"; V(0) {_fmt(s['v_low'], 3)}, V(10) {_fmt(s['v_high'], 3)}"
            sep_cells.append(text)
        acc.append(f"| {label} | " + " | ".join(acc_cells) + " |")
        sep.append(f"| {label} | " + " | ".join(sep_cells) + " |")
    lines = acc + ["", "How well the training loss separates the corrupted labels (AUROC, mean of the seeds: at the "]
    lines[-1] += "end, and its highest over the evaluations where recorded; '-' where not), how well the weight does, "
    lines[-1] += "the mean clean / noisy weights and V at the loss grid's ends, at the last evaluation"
    lines += ["", *sep]
    if left_out:
        counts = collections.Counter(reason.split(" (")[0] for _, reason in left_out)
        lines += ["", "Left out: " + ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))]
        lines += [f"- {path}: {reason}" for path, reason in left_out if reason != "dry run"]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = Parser(description="The laptop ablations' runs, one line each: the run folder under RUNS, then its flags.")
    p.add_argument("--rows", default=" ".join(RUN_ORDER), help="variants, space-separated (default: all, in run order)")
    p.add_argument("--settings", default=",".join(f"{k} {v}" for k, v in SETTINGS), help='"type p" comma-separated')
    p.add_argument("--seeds", default="1 2 3", help="seeds, space-separated")
    args = p.parse_args(argv)
    rows, settings = args.rows.split(), [tuple(s.split()) for s in args.settings.split(",") if s.strip()]
    unknown = [r for r in rows if r not in VARIANTS] + [" ".join(s) for s in settings if s not in SETTINGS]
    unknown += [s for s in args.seeds.split() if not s.isdigit()]
    if unknown:
        names = ", ".join(VARIANTS)
        raise SystemExit(
            f"ablations: unknown row, setting or seed {unknown[0]!r}; rows: {names}; settings: {p.get_default('settings')}"
        )
    for folder, flags in commands(rows, settings, [int(s) for s in args.seeds.split()]):
        print(folder, *flags)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
