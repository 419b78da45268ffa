"""Tables of finished runs in the paper's layout, with the paper's numbers beside ours, and of any other runs.

Reads RUNS/<table>/<dataset>/<setting>/<row>/seed<k> (the table scripts' layout) through run_files.py
and prints, per table and dataset, mean ± std over seeds of the best and of the last test accuracy, the
number of seeds, and the paper's figure with our best minus it. A cell without results reads "missing",
never zero. A cell holds one configuration: runs that differ in anything but the seed and the free flags
(run_files.FREE_FLAGS) are reported as a conflict, never averaged. Dry runs, unfinished and diverged
runs, and runs whose flags do not match their folder are left out of the table, and counted below it.
flip and flip2 noise are separate rows. Run directories anywhere else under RUNS (made by hand, a sweep of
one's own) make one more table, a row per configuration (tools/by_config.py).

    python scripts/summarize.py --runs runs                       # Markdown, every table found
    python scripts/summarize.py --runs runs --csv results.csv     # also a CSV, one row per cell
    python scripts/summarize.py --runs runs --weights             # also the clean / noisy sample weights
"""

import collections
import csv
import glob
import io
import math
import os
import sys
from dataclasses import dataclass

from mwnet.cli import Parser
from mwnet.data.catalog import SPECS
from mwnet.errors import UserError
from mwnet.runs.run_files import config_differences, config_key, read_run, write_text_atomic
from mwnet.tools import ablations, by_config
from mwnet.tools.by_config import CHANGED, changed_code, fmt_mean, mean_std, why_unfinished
from mwnet.tools.tables import ROWS, TABLES, WEIGHT_ROWS


def levels_of(spec, dataset):
    """A table's settings for a dataset, in the paper's order (one list for all, or one per dataset)."""
    levels = spec["levels"]
    return list(levels.get(dataset, []) if isinstance(levels, dict) else levels)


PAPER_ROWS = ("mwnet", "l2rw", "erm", "erm_long")  # a table's rows unless it names its own


def rows_of(spec):
    return [(row, name) for row, name in ROWS if row in spec.get("rows", PAPER_ROWS)]


MISPLACED = "misplaced (its flags do not match its folder)"


def why_left_out(run, table, dataset, setting, row):
    """None if the run counts in its cell, else the reason it does not."""
    reason = why_unfinished(run)
    if reason:
        return reason
    method = {"erm_long": "erm", "mwnet_selected": "mwnet"}.get(row, row)
    source = (
        "selected" if row.endswith("_selected") else "clean"
    )  # a selected meta set is never pooled with a clean one
    expected = TABLES[table]["expected"](run.config)
    found = (run.config.get("dataset"), run.config.get("method"), run.config.get("meta_source", "clean"), expected)
    if found != (dataset, method, source, setting):
        return MISPLACED
    return None


def describe_run(config):
    """A run's configuration as the flags that place it in a table."""
    c = config
    words = [c.get("script", "?"), f"--method {c.get('method')}", f"--dataset {c.get('dataset')}"]
    words.append(f"--corruption_type {c.get('corruption_type')} --corruption_prob {c.get('corruption_prob')}")
    if c.get("imb_factor"):
        words.append(f"--imb_factor {c['imb_factor']:g}")
    return " ".join(words + [f"--seed {c.get('seed')}"])


@dataclass
class TableRuns:
    """The runs under one table and dataset: those in its cells, those left out (dry, unfinished, diverged,
    unreadable) with the reason, and finished runs the table has no place for, with their configuration."""

    found: dict
    left_out: list
    not_in_table: list


def table_runs(runs, table, dataset):
    spec, out = TABLES[table], TableRuns(collections.defaultdict(list), [], [])
    for path in sorted(glob.glob(os.path.join(runs, table, dataset, "*", "*", "seed*"))):
        setting_dir, row = path.split(os.sep)[-3:-1]
        cell = spec["cell"](setting_dir)
        placed = cell is not None and row in dict(rows_of(spec))
        try:
            run = read_run(path)
            reason = why_left_out(run, table, dataset, setting_dir, row) if placed else why_unfinished(run)
            if reason is None:
                run.metrics  # noqa: B018  (read now: a damaged file is named here, and the table goes on)
        except UserError as e:
            out.left_out.append((path, f"unreadable: {e}"))
            continue
        if reason == MISPLACED or reason is None and not placed:
            out.not_in_table.append((path, describe_run(run.config)))
        elif reason:
            out.left_out.append((path, reason))
        else:
            out.found[(*cell, row)].append(run)
    return out


def weight_stats(group):
    """Mean over seeds of the clean and noisy samples' mean weight at the last evaluation and, for a
    meta-weight-net, of its weight at the smallest and the largest loss of the recorded grid."""
    last = [(r.metrics[-1], r.config) for r in group if r.metrics]
    clean = [m["weight_clean"] for m, _ in last if m.get("weight_clean") is not None]
    noisy = [m["weight_noisy"] for m, _ in last if m.get("weight_noisy") is not None]
    curves = [(m["vnet_curve"], c["vnet_loss_grid"]) for m, c in last if m.get("vnet_curve")]
    out = {
        "weight_clean": mean_std(clean)[0],
        "weight_noisy": mean_std(noisy)[0],
        "v_grid": None,
        "v_low": None,
        "v_high": None,
    }
    if curves:
        grid = curves[0][1]
        out.update(
            v_grid=(grid[0], grid[-1]),
            v_low=mean_std([v[0] for v, _ in curves])[0],
            v_high=mean_std([v[-1] for v, _ in curves])[0],
        )
    return out


def tail_weights(group, groups):
    """For a table that groups its classes, under label noise: the mean over seeds of the mean final weight
    (weights.npz) of the clean and of the noisy training samples whose true class is in the last group (the
    tail); (None, None) where there is no noisy tail sample or a run has no weights."""
    if not groups or not group:
        return None, None
    _, a, b = groups[-1]
    clean, noisy = [], []
    for run in group:
        w = run.weights
        if w is None:
            return None, None
        tail = (w["clean_labels"] >= a) & (w["clean_labels"] < b)
        wrong = w["is_noisy"].astype(bool)
        if not (tail & wrong).any() or not (tail & ~wrong).any():
            return None, None
        clean.append(float(w["weight"][tail & ~wrong].mean()))
        noisy.append(float(w["weight"][tail & wrong].mean()))
    return mean_std(clean)[0], mean_std(noisy)[0]


def make_cell(table, dataset, variant, level, row, label, runs):
    spec = TABLES[table]
    paper = None
    levels = levels_of(spec, dataset)
    if level in levels:  # a setting the paper has; others (found under --runs) stand without
        paper = spec["paper"].get(dataset, {}).get(row, [None] * len(levels))[levels.index(level)]
    paper = paper or spec.get("remarks", {}).get((dataset, row, level))
    groups = collections.defaultdict(list)
    for r in runs:
        groups[config_key(r.config)].append(r)
    conflict = ""
    if len(groups) > 1:
        first, second = (g[0].config for g in list(groups.values())[:2])
        conflict = f"{len(groups)} configurations ({'; '.join(config_differences(first, second, leave_out=('seed',)))})"
    group = [] if conflict else runs
    best_mean, best_std = mean_std([r.results["best_test_acc"] for r in group])
    last_mean, last_std = mean_std([r.results["last_test_acc"] for r in group])
    cell = dict(table=table, dataset=dataset, variant=variant, setting=level, row=row, label=label, n=len(group))
    cell.update(best_mean=best_mean, best_std=best_std, last_mean=last_mean, last_std=last_std)
    cell.update(paper=paper[0] if paper else None, paper_std=paper[1] if paper else None)
    reported = last_mean if spec.get("reported") == "last" else best_mean  # what the paper's figure is of
    cell["diff"] = reported - paper[0] if paper and reported is not None else None
    cell.update(weight_stats(group), conflict=conflict, changed_code=changed_code(group))
    cell["groups"] = group_accuracy(group, spec.get("groups"))
    noisy = cell["weight_noisy"] is not None
    cell["tail_weight_clean"], cell["tail_weight_noisy"] = (
        tail_weights(group, spec.get("groups")) if noisy else (None, None)
    )
    return cell


def group_accuracy(group, groups):
    """{group: mean over seeds of the mean accuracy of its classes at the last evaluation}, for a table that groups
    its classes (head, middle, tail); None where no run records each class's accuracy."""
    if not groups:
        return None
    last = [r.metrics[-1].get("class_acc") for r in group if r.metrics]
    if not last or any(acc is None for acc in last):
        return None
    return {name: mean_std([sum(acc[a:b]) / (b - a) for acc in last])[0] for name, a, b in groups}


def cells(runs, table, dataset):
    """One dict per (row, noise variant, level) of a table, the table's levels (the paper's, then any other
    found under --runs), and its TableRuns."""
    spec = TABLES[table]
    runs_of = table_runs(runs, table, dataset)
    found = runs_of.found
    variants = sorted({v for v, _, _ in found}) or [""]
    extra = sorted({lv for _, lv, _ in found} - set(levels_of(spec, dataset)), key=level_order)
    levels = levels_of(spec, dataset) + extra
    out = []
    for row, name in rows_of(spec):
        for variant in variants:
            label = f"{name} ({variant})" if len(variants) > 1 else name
            for level in levels:
                out.append(make_cell(table, dataset, variant, level, row, label, found.get((variant, level, row), [])))
    return out, runs_of, variants, levels


def level_order(level):
    """Settings found beside the paper's, in a readable order: by kind, then by number."""
    kind, _, number = level.rpartition("_p")
    try:
        return kind, float(number.removeprefix("imb"))
    except ValueError:
        return kind, math.inf


def fmt_cell(c):
    if c["conflict"]:
        ours = f"conflict: {c['conflict']}"
    elif c["n"] == 0:
        ours = "missing"
    else:
        best, last = fmt_mean(c["best_mean"], c["best_std"], c["n"]), fmt_mean(c["last_mean"], c["last_std"], c["n"])
        ours = f"best {best}, last {last} (n={c['n']}){CHANGED if c['changed_code'] else ''}"
    if c["paper"] is None:
        return ours
    paper = f"{c['paper']:.2f}" + (f" ± {c['paper_std']:.2f}" if c["paper_std"] is not None else "")
    diff = f" ({c['diff']:+.2f})" if c["diff"] is not None else ""
    return f"{ours}; paper {paper}{diff}"


def fmt_weights(c):
    if c["conflict"] or c["n"] == 0:
        return "conflict" if c["conflict"] else "missing"
    if c["weight_clean"] is None or c["weight_noisy"] is None:
        text = "no weights"
    else:
        text = f"clean {c['weight_clean']:.3f} / noisy {c['weight_noisy']:.3f}"
        if c["tail_weight_clean"] is not None:
            text += f", the tail's {c['tail_weight_clean']:.3f} / {c['tail_weight_noisy']:.3f}"
    if c["v_grid"]:
        text += f"; V({c['v_grid'][0]:g}) {c['v_low']:.3f}, V({c['v_grid'][1]:g}) {c['v_high']:.3f}"
    return f"{text} (n={c['n']})"


def fmt_groups(c):
    if c["conflict"] or c["n"] == 0:
        return "conflict" if c["conflict"] else "missing"
    if c["groups"] is None:
        return "not recorded"
    return " / ".join(f"{v:.2f}" for v in c["groups"].values()) + f" (n={c['n']})"


def markdown(runs, table, dataset, weights=False):
    spec = TABLES[table]
    table_cells, runs_of, variants, levels = cells(runs, table, dataset)
    left_out = runs_of.left_out
    title = (
        spec["title"] if len(variants) > 1 or not variants[0] else spec["title"].replace(",", f" ({variants[0]}),", 1)
    )
    header = ["| | " + " | ".join(levels) + " |", "|---" * (len(levels) + 1) + "|"]
    lines = [f"### {title}: {dataset}", "", *header]
    labels = list(dict.fromkeys(c["label"] for c in table_cells))
    for label in labels:
        lines.append(f"| {label} | " + " | ".join(fmt_cell(c) for c in table_cells if c["label"] == label) + " |")
    if weights:
        lines += [
            "",
            f"Sample weights, {dataset}: mean weight of clean / noisy training samples at the last evaluation"
            + (", and of the tail classes' own (weights.npz)" if spec.get("groups") else ""),
            "",
            *header,
        ]
        for label in labels:
            row_cells = [c for c in table_cells if c["label"] == label]
            if row_cells[0]["row"] in WEIGHT_ROWS:
                lines.append(f"| {label} | " + " | ".join(fmt_weights(c) for c in row_cells) + " |")
    if spec.get("groups"):
        names = " / ".join(name for name, _, _ in spec["groups"])
        ranges = ", ".join(f"{name} {a}-{b - 1}" for name, a, b in spec["groups"])
        lines += [
            "",
            f"Test accuracy of the {names} classes at the last evaluation, {dataset} (classes {ranges}, by size)",
            "",
        ]
        lines += header
        for label in labels:
            row_cells = [c for c in table_cells if c["label"] == label]
            lines.append(f"| {label} | " + " | ".join(fmt_groups(c) for c in row_cells) + " |")
    if spec.get("reference"):
        title, ref_levels, ref_rows = spec["reference"]
        lines += ["", f"{title}:", "", "| | " + " | ".join(ref_levels) + " |", "|---" * (len(ref_levels) + 1) + "|"]
        lines += [f"| {name} | " + " | ".join(cells.split()) + " |" for name, cells in ref_rows.items()]
    if any(c["changed_code"] for c in table_cells):
        lines += ["", f"{CHANGED} from code with local changes (config.json: environment.git_changes)"]
    if runs_of.not_in_table:
        n = len(runs_of.not_in_table)
        lines += ["", f"Not in the table: {n} finished runs whose folder or flags are none of its settings and rows"]
        lines += [f"- {path}: {words}" for path, words in runs_of.not_in_table]
    if left_out:
        counts = collections.Counter(reason for _, reason in left_out)
        lines += ["", "Left out: " + ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))]
        lines += [f"- {path}: {reason}" for path, reason in left_out if reason not in ("dry run",)]
    return "\n".join(lines) + "\n"


def found_tables(runs):
    """(table, dataset) pairs that have a folder under runs: the tables in the paper's order, the known datasets
    first, then any other folder (whose runs are then shown, or named, rather than ignored)."""
    known = [name for name, about in SPECS.items() if not about.streamed]
    pairs = []
    for t in TABLES:
        folder = os.path.join(runs, t)
        found = (
            sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
            if os.path.isdir(folder)
            else []
        )
        pairs += [(t, d) for d in sorted(found, key=lambda d: (known.index(d) if d in known else len(known), d))]
    return pairs


def write_csv(path, all_cells):
    fields = list(all_cells[0])
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for c in all_cells:
        row = {k: ("" if v is None else v) for k, v in c.items()}
        row["v_grid"] = "" if c["v_grid"] is None else f"{c['v_grid'][0]:g}..{c['v_grid'][1]:g}"
        row["groups"] = "" if c["groups"] is None else ";".join(f"{k}={v:.4f}" for k, v in c["groups"].items())
        writer.writerow(row)
    write_text_atomic(path, out.getvalue())


def main(argv=None):
    p = Parser(description="Summarise finished runs beside the paper's tables.")
    p.add_argument("--runs", default="runs", help="root of the run directories (default: runs)")
    p.add_argument(
        "--table",
        choices=sorted([*TABLES, ablations.TABLE]),
        action="append",
        help="only these tables (default: every table found)",
    )
    p.add_argument(
        "--csv",
        default=None,
        help="also write every cell to this CSV file (every column of the Markdown, weights included)",
    )
    p.add_argument(
        "--weights",
        action="store_true",
        help="also the mean weight of clean and of noisy samples at the last evaluation, and V at the grid's ends",
    )
    args = p.parse_args(argv)
    if args.csv and not os.path.isdir(os.path.dirname(os.path.abspath(args.csv))):
        sys.stderr.write(f"summarize: --csv {args.csv}: its folder does not exist; create it or choose another path\n")
        return 2
    pairs = [(t, d) for t, d in found_tables(args.runs) if not args.table or t in args.table]
    ablated = os.path.isdir(os.path.join(args.runs, ablations.TABLE)) and (
        not args.table or ablations.TABLE in args.table
    )
    # Runs outside the table scripts' folders (made by hand, a sweep of one's own): one table, by configuration.
    tables = [os.path.join(args.runs, t) for t in [*TABLES, ablations.TABLE]]
    others = [] if args.table else by_config.run_dirs(args.runs, skip=tables)
    grouped, unfinished = by_config.group(others) if others else ({}, [])
    finished = bool(grouped)
    if not pairs and not finished and not ablated:
        dry = os.path.join(args.runs, "dry")
        hint = "run a table script (scripts/table_*.sh) or a training script first"
        if others:
            counts = collections.Counter(reason.split(":")[0] for _, reason in unfinished)
            hint = f"of its {len(others)} run directories none is finished ({', '.join(f'{n} {r}' for r, n in sorted(counts.items()))})"
        if found_tables(dry):  # a dry table's runs: a smoke test, never a result
            hint = f"the runs under {dry} are dry runs, which are never results (summarize --runs {dry} lists them as left out); run the table script without DRY_RUN"
        sys.stderr.write(f"summarize: no finished run under {args.runs}; {hint}\n")
        return 2
    for table, dataset in pairs:
        print(markdown(args.runs, table, dataset, args.weights))
    if ablated:
        print(ablations.markdown(args.runs))
    if others:
        print(by_config.markdown(args.runs, others, args.weights, grouped=(grouped, unfinished)))
    if args.csv:
        try:
            write_csv(args.csv, [c for t, d in pairs for c in cells(args.runs, t, d)[0]])
        except UserError as e:
            sys.stderr.write(f"summarize: {e}\n")
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
