"""A table of any runs: every run directory under a folder, at any depth (runs made by hand, a sweep of one's
own), one row per configuration (every flag that changes the numbers, but the seed), and as columns only the
flags in which the rows differ. summarize.py prints it for the runs outside the table scripts' folders.
"""

import collections
import math
import os

from mwnet.errors import UserError
from mwnet.runs.run_files import CONFIG, config_key, read_run, table_config

CHANGED = "†"  # a row with a run from a checkout whose tracked files differed from its commit
# Said once above the table when every row shares them, else a column like any other flag.
IDENTITY = ("script", "dataset", "arch", "method", "corruption_type", "corruption_prob")


def mean_std(values):
    if not values:
        return None, None
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std


def fmt_mean(mean, std, n):
    """'90.50 ± 0.71', or one seed's value alone: a spread of one number is no spread."""
    return f"{mean:.2f}" if n == 1 else f"{mean:.2f} ± {std:.2f}"


def why_unfinished(run):
    """None for a finished, non-dry run with its accuracies, else why it is no result."""
    if run.config is None or run.results is None:
        return "unfinished"
    if run.config.get("dry_run"):
        return "dry run"
    if run.status != "finished":
        return run.status
    if not all(isinstance(run.results.get(k), int | float) for k in ("best_test_acc", "last_test_acc")):
        return "damaged (results.json without its accuracies)"
    return None


def changed_code(runs):
    return any((r.config.get("environment") or {}).get("git_changes") for r in runs)


def run_dirs(root, skip=()):
    """Every folder under `root` (itself included) that holds a config.json, not looking inside one, nor
    inside the folders in `skip`."""
    found, skip = [], {os.path.normpath(s) for s in skip}
    for folder, dirs, files in os.walk(root):
        if os.path.normpath(folder) in skip:
            dirs[:] = []
        elif CONFIG in files:
            found.append(folder)
            dirs[:] = []
        else:
            dirs.sort()
    return sorted(found)


def group(paths):
    """({configuration key: runs}, [(path, why left out)]) of the run directories `paths`."""
    rows, left_out = collections.defaultdict(list), []
    for path in paths:
        try:
            run = read_run(path)
            reason = why_unfinished(run)
            if reason is None:
                run.metrics  # noqa: B018  (read now: a damaged file is named here, and the table goes on)
        except UserError as e:
            reason = f"unreadable: {e}"
        if reason:
            left_out.append((path, reason))
        else:
            rows[config_key(run.config)].append(run)
    return rows, left_out


def _value(v):
    if isinstance(v, list):
        return ", ".join(str(x) for x in v) or "none"
    return "-" if v is None else str(v)


def markdown(root, paths, weights=False, grouped=None):
    """The table of the finished runs among `paths`, and the runs left out, named; grouped: group(paths), where
    the caller has it already."""
    rows, left_out = grouped if grouped is not None else group(paths)
    lines = [f"### Runs under {root}, by configuration", ""]
    if rows:
        configs = [table_config(runs[0].config) for runs in rows.values()]
        keys = sorted({k for c in configs for k in c} - {"seed"})
        differ = [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]
        differ.sort(key=lambda k: (IDENTITY.index(k) if k in IDENTITY else len(IDENTITY), k))  # method, then lr ...
        shared = [f"{k} {_value(configs[0].get(k))}" for k in IDENTITY if k not in differ and k in configs[0]]
        lines += [f"Every row: {', '.join(shared)}.", ""] if shared else []
        header = [*differ, "best", "last", "n"] + (["weight clean / noisy"] if weights else [])
        lines += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
        order = sorted(rows.values(), key=lambda runs: [repr(runs[0].config.get(k)) for k in differ])
        for runs in order:
            lines.append("| " + " | ".join(_row(runs, differ, weights)) + " |")
        if any(changed_code(runs) for runs in rows.values()):
            lines += ["", f"{CHANGED} from code with local changes (config.json: environment.git_changes)"]
    else:
        lines.append("No finished run.")
    if left_out:
        counts = collections.Counter(reason.split(":")[0] for _, reason in left_out)
        lines += ["", "Left out: " + ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))]
        lines += [f"- {path}: {reason}" for path, reason in left_out]
    return "\n".join(lines) + "\n"


def _row(runs, differ, weights):
    n = len(runs)
    best = fmt_mean(*mean_std([r.results["best_test_acc"] for r in runs]), n)
    last = fmt_mean(*mean_std([r.results["last_test_acc"] for r in runs]), n)
    cells = [_value(table_config(runs[0].config).get(k)) for k in differ] + [
        best,
        last,
        f"{n}{CHANGED if changed_code(runs) else ''}",
    ]
    if weights:
        last_lines = [r.metrics[-1] for r in runs if r.metrics]
        clean = [m["weight_clean"] for m in last_lines if m.get("weight_clean") is not None]
        noisy = [m["weight_noisy"] for m in last_lines if m.get("weight_noisy") is not None]
        cells.append(f"{mean_std(clean)[0]:.3f} / {mean_std(noisy)[0]:.3f}" if clean and noisy else "-")
    return cells
