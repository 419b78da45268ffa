"""The paper's figures from run directories, sized for a paper's column and readable there.

    python scripts/plot.py runs/fm-u60-mwnet runs/fm-u60-l2rw runs/fm-u60-erm --out figures
    python scripts/plot.py runs/fashionmnist_resnet32/fashionmnist/*/mwnet/seed* --out figs --format png,pdf
writes, for the runs given:
    weighting_function.<ext>  the learned weight V(loss) at the last evaluation, on a fixed [0, 1] axis
    weight_histograms.<ext>   densities of the last training weights of clean and of noisy samples, one
                              panel per configuration: MW-Net panels share their axes, L2RW's (weights
                              that sum to 1 per batch) have their own
    test_accuracy.<ext>       test accuracy over training
    loss_separation.<ext>     how well the training losses tell corrupted labels from clean ones (AUROC) over
                              training, for runs that record it (every run with known noise, since it exists)
    class_weights.<ext>       long-tailed runs with a meta-weight-net: each class's mean final weight against its
                              size
The weighting function is drawn over the function each run started from (grey), where its config records it.
Runs that differ only in the seed form one curve: their mean, with a band from the lowest to the highest
seed. Labels name the method as the tables do (MW-Net, L2RW, Plain (same schedule), Plain (BaseModel
schedule)) and add the settings that tell two curves apart, or come from --labels.
"""

import os
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mwnet.cli import Parser
from mwnet.data.catalog import spec
from mwnet.errors import UserError  # noqa: E402
from mwnet.method import METHODS
from mwnet.method import method as method_spec
from mwnet.models import model_label  # noqa: E402
from mwnet.runs.run_files import config_key, read_run, table_config  # noqa: E402

ROW_NAMES = {
    "mwnet": "MW-Net",
    "mwnet_selected": "MW-Net (selected meta set)",
    "l2rw": "L2RW",
    "erm": "Plain (same schedule)",
    "erm_long": "Plain (BaseModel schedule)",
    "focal": "Focal loss",
    "cb": "Class-balanced loss",
    "finetune": "Fine-tuning",
    "la": "Logit adjustment",
}
STYLE = {"font.size": 8, "axes.labelsize": 8, "axes.titlesize": 8, "legend.fontsize": 8, "xtick.labelsize": 8}
STYLE.update({"ytick.labelsize": 8, "lines.linewidth": 1.2, "axes.spines.top": False, "axes.spines.right": False})
COLUMN = 3.4  # inches: one column of a two-column paper


def describe(config):
    """The settings of a configuration, in words, keyed so that differing ones can be picked out."""
    c = table_config(config)
    noise = f"{c.get('corruption_type')}\u00a0{100 * c.get('corruption_prob', 0):g}%"
    if c.get("corruption_type") == "human":
        noise = f"human labels ({c.get('human_labels')})"
    if spec(c.get("dataset")).own_labels:  # the dataset's own labels, no synthetic noise
        noise = "its own labels"
    words = {"model": model_label(c), "dataset": c.get("dataset"), "noise": noise}
    if c.get("imb_factor"):
        words["imbalance"] = f"imbalance {c['imb_factor']:g}"
    skip = {"arch", "layers", "widen_factor", "droprate", "dataset", "corruption_type", "corruption_prob", "imb_factor"}
    skip |= {"human_labels", "noise_file"}
    skip |= {"seed", "method", "script", "unit", "sampling", "dry_run"}  # the method names the curve; [dry run] marks
    # a no-break space inside each "flag value": a wrapped label breaks between settings, never within one
    words.update({k: f"{k}\u00a0{_value(v)}" for k, v in c.items() if k not in skip})
    return words


def _value(v):
    if isinstance(v, list):
        return ",\u00a0".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v) or "none"
    if isinstance(v, bool):
        return "on" if v else "off"
    return f"{v:g}" if isinstance(v, float) else str(v)


class Series:
    """The runs of one configuration (seeds), drawn as one curve."""

    def __init__(self, runs):
        self.runs = runs
        self.config = runs[0].config
        folder = os.path.basename(os.path.dirname(os.path.normpath(runs[0].path)))
        method = self.config["method"]
        in_table = folder in ROW_NAMES and folder in (method, f"{method}_long", f"{method}_selected")
        self.name = ROW_NAMES[folder] if in_table else method_spec(method).label
        self.in_table = in_table  # named by its table row, which also says where its meta set came from
        self.label = self.name
        # Never shown as a result without saying so: a dry run, a diverged or an unfinished run.
        marks = {"dry run"} if self.config.get("dry_run") else set()
        marks |= {r.status for r in runs if r.status != "finished"}
        self.mark = f" [{', '.join(sorted(marks))}]".replace(" run", "\u00a0run") if marks else ""
        self.rank = list(ROW_NAMES).index(folder if in_table else method)  # the tables' row order

    def mean_band(self, key):
        """x, mean, low, high of a per-evaluation metric over the seeds (their common evaluations)."""
        metrics = [r.metrics for r in self.runs]
        n = min(len(m) for m in metrics)
        x = np.array([m["epoch"] for m in metrics[0][:n]])
        y = np.array([[m[key] for m in ms[:n]] for ms in metrics], dtype=float)
        return x, y.mean(0), y.min(0), y.max(0)


def read_runs(paths, left_out):
    """The runs that can be drawn; each other path goes to `left_out` with the reason, in one line."""
    runs = []
    for path in paths:
        try:
            run = read_run(path)
            if run.config is None:
                left_out.append((path, "not a run directory (no config.json)"))
            elif not run.metrics:
                left_out.append((path, "no evaluation yet"))
            else:
                runs.append(run)
                try:
                    run.weights  # noqa: B018  (read now, so that a damaged file is named here)
                except UserError as e:
                    run.__dict__["weights"] = None
                    left_out.append((path, f"{e} (left out of the histograms)"))
        except UserError as e:
            left_out.append((path, str(e)))
    return runs


def make_series(paths, labels=None, left_out=None):
    """One Series per configuration. Runs that cannot be drawn go to `left_out` (a list), or raise without one."""
    notes = [] if left_out is None else left_out
    runs = read_runs(paths, notes)
    if left_out is None and notes:
        raise UserError(f"{notes[0][0]}: {notes[0][1]}")
    if not runs:
        raise UserError("none of the runs given has an evaluation to draw")
    groups = {}
    for run in runs:
        groups.setdefault(config_key(run.config), []).append(run)
    series = sorted((Series(g) for g in groups.values()), key=lambda s: s.rank)  # stable: else as given
    if labels:
        if len(labels) != len(series):
            raise UserError(
                f"--labels gives {len(labels)} labels for {len(series)} configurations (seeds of one share a label)"
            )
        for s, label in zip(series, labels, strict=True):
            s.label = label + s.mark
        return series
    words = [describe(s.config) for s in series]  # the settings in which the curves differ, beside their names
    # a setting some runs lack (a flag that counts for some configurations only, --warmup) is left to the others
    differ = [k for k in words[0] if all(k in w for w in words) and len({w[k] for w in words}) > 1]
    for s, w in zip(series, words, strict=True):
        shown = [w[k] for k in differ if not (s.in_table and k == "meta_source")]
        s.label = ", ".join([s.name, *shown]) + s.mark
    return series


def colours(n):
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


WRAP = 40  # characters a line of a legend entry or a panel's title: longer labels wrap rather than overlap


def legend(ax, n):
    """Below the axes, its left edge at theirs, each entry wrapped: never over the curves, the axis labels or
    the next panel, however long the labels."""
    handles, labels = ax.get_legend_handles_labels()
    labels = [textwrap.fill(label, WRAP) for label in labels]
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(0, -0.2), ncol=1 if n < 5 else 2, frameon=False)


LINESTYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def band_plot(ax, series, key, ylabel, ylim=None):
    """One curve per series, each with its own colour, line style and hollow marker, drawn thinner and smaller in
    turn, so that equal curves (a dry table's rows) stay visible one inside the other."""
    for i, (s, colour) in enumerate(zip(series, colours(len(series)), strict=True)):
        x, mean, low, high = key(s)
        seeds = f" ({len(s.runs)} seeds)" if len(s.runs) > 1 else ""
        style = dict(linestyle=LINESTYLES[i % len(LINESTYLES)], marker=MARKERS[i % len(MARKERS)], fillstyle="none")
        style.update(linewidth=max(0.8, 2.4 - 0.4 * i), markersize=max(2.5, 7.0 - 1.2 * i))
        ax.plot(x, mean, color=colour, markevery=max(1, len(x) // 12), label=s.label + seeds, **style)
        if len(s.runs) > 1:
            ax.fill_between(x, low, high, color=colour, alpha=0.2, linewidth=0)
    ax.set_ylabel(ylabel)
    if ylim:
        ax.set_ylim(*ylim)
    legend(ax, len(series))


def vnet_curves(s):
    curves = np.array([r.metrics[-1]["vnet_curve"] for r in s.runs], dtype=float)
    return np.array(s.config["vnet_loss_grid"]), curves.mean(0), curves.min(0), curves.max(0)


def plot_weighting_function(series):
    series = [s for s in series if s.runs[0].metrics[-1].get("vnet_curve")]
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(COLUMN, 2.5))
    band_plot(ax, series, vnet_curves, "weight V(loss)", ylim=(0, 1))
    start = dict(color="0.6", linewidth=0.9, zorder=0)  # where each started, in grey beneath: how far it moved
    drawn = False
    for s in series:
        starts = [r.config.get("vnet_curve_init") for r in s.runs]
        if all(starts):
            ax.plot(np.array(s.config["vnet_loss_grid"]), np.mean(starts, 0), **start)
            drawn = True
    if drawn:
        ax.plot([], [], label="grey: the same at initialisation", **start)
        legend(ax, len(series) + 1)
    ax.set_xlabel("training loss")
    return fig


def plot_class_weights(series):
    """Under class imbalance: the mean final weight of each class's samples against the class's size (its
    training samples), one line per configuration with a meta-weight-net; does the tail weigh more?"""
    series = [s for s in series if s.config.get("imb_factor") and method_spec(s.config["method"]).vnet]
    series = [s for s in series if all(r.weights is not None and "noisy_labels" in r.weights for r in s.runs)]
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(COLUMN, 2.5))
    for i, (s, colour) in enumerate(zip(series, colours(len(series)), strict=True)):
        sizes, means = [], []
        for r in s.runs:
            labels, weight = r.weights["noisy_labels"], r.weights["weight"]
            classes = np.unique(labels)
            sizes.append([np.sum(labels == c) for c in classes])
            means.append([np.nanmean(weight[labels == c]) for c in classes])
        seeds = f" ({len(s.runs)} seeds)" if len(s.runs) > 1 else ""
        x, y = np.mean(sizes, 0), np.mean(means, 0)
        ax.plot(x, y, color=colour, marker=MARKERS[i % len(MARKERS)], fillstyle="none", label=s.label + seeds)
    ax.set_xscale("log")
    ax.set_xlabel("training samples of the class")
    ax.set_ylabel("mean weight of its samples")
    legend(ax, len(series))
    return fig


def plot_test_accuracy(series):
    fig, ax = plt.subplots(figsize=(COLUMN, 2.5))
    band_plot(ax, series, lambda s: s.mean_band("test_acc"), "test accuracy (%)")
    ax.set_xlabel("epoch")
    return fig


def plot_loss_separation(series):
    """How well the latest training losses tell the corrupted labels from the clean ones (AUROC) over training:
    whether a weighting function of the loss could separate them, and when memorisation closes the gap."""
    series = [s for s in series if all(m.get("loss_auroc") is not None for r in s.runs for m in r.metrics)]
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(COLUMN, 2.5))
    band_plot(ax, series, lambda s: s.mean_band("loss_auroc"), "AUROC of the training loss\n(corrupted vs clean)")
    ax.axhline(0.5, color="0.6", linewidth=0.8, linestyle=":")  # chance: the loss says nothing
    ax.set_xlabel("epoch")
    return fig


def plot_weight_histograms(series):
    """A panel per configuration: densities of the last weights of clean and of noisy samples; the counts in the
    panel's title and one legend below the panels, so that no legend covers the bars."""
    with_weights = [(s, [r for r in s.runs if r.weights is not None]) for s in series]
    weighted = [m.name for m in METHODS.values() if m.meta_set]  # the methods that weight the samples
    groups = [[(s, rs) for s, rs in with_weights if s.config["method"] == m and rs] for m in weighted]
    panels = [p for g in groups for p in g]
    if not panels:
        return None
    width = min(2 * COLUMN, 2.3 * len(panels))
    fig = plt.figure(figsize=(width, 2.3))
    wrap = max(12, int(width / len(panels) * 12))  # characters of 8-point text a line over one panel's width
    axes = []
    for group in groups:
        weights = [np.concatenate([r.weights["weight"] for r in rs]) for _, rs in group]
        top = max((np.nanmax(w) for w in weights), default=1.0)
        bins = np.linspace(0, 1 if group is groups[0] else top, 41)  # MW-Net's weights lie in [0, 1]
        first = None
        for (s, rs), w in zip(group, weights, strict=True):
            ax = fig.add_subplot(1, len(panels), len(axes) + 1, sharex=first, sharey=first)
            if first is not None:  # the axes it shares say its scale once, at the left
                ax.tick_params(labelleft=False)
            first = first or ax
            noisy = np.concatenate([r.weights["is_noisy"] for r in rs]).astype(bool)
            seen = ~np.isnan(w)
            counts = []
            for mask, name, colour in ((seen & ~noisy, "clean", "tab:blue"), (seen & noisy, "noisy", "tab:orange")):
                if mask.any():
                    ax.hist(w[mask], bins=bins, density=True, alpha=0.6, color=colour, label=name)
                counts.append(f"{mask.sum()} {name}")
            tally = textwrap.fill("(" + ", ".join(counts) + ")", wrap)
            ax.set_title(f"{textwrap.fill(s.label, wrap)}\n{tally}")
            ax.set_xlabel("weight")
            axes.append(ax)
    axes[0].set_ylabel("density")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c, alpha=0.6) for c in ("tab:blue", "tab:orange")]
    fig.legend(handles, ["clean", "noisy"], loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=2, frameon=False)
    return fig


FIGURES = {
    "weighting_function": plot_weighting_function,
    "weight_histograms": plot_weight_histograms,
    "test_accuracy": plot_test_accuracy,
    "loss_separation": plot_loss_separation,
    "class_weights": plot_class_weights,
}


def main(argv=None):
    p = Parser(description="Plot the paper's figures from run directories.")
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("--out", default="figures", help="folder for the figures (default: figures)")
    p.add_argument("--format", default="png", help="comma-separated: png, pdf, svg (default: png)")
    p.add_argument("--labels", default=None, help="comma-separated labels, one per configuration, in the order given")
    args = p.parse_args(argv)
    formats = args.format.split(",")
    if not set(formats) <= {"png", "pdf", "svg"}:
        sys.stderr.write(f"plot: --format {args.format}: choose from png, pdf, svg\n")
        return 2
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        sys.stderr.write(f"plot: --out {args.out} is a file; --out names a folder for the figures\n")
        return 2
    left_out = []
    try:
        series = make_series(args.runs, args.labels.split(",") if args.labels else None, left_out)
    except UserError as e:
        for path, reason in left_out:
            sys.stderr.write(f"plot: left out {path}: {reason}\n")
        sys.stderr.write(f"plot: {e}\n")
        return 2
    for path, reason in left_out:
        sys.stderr.write(f"plot: left out {path}: {reason}\n")
    try:
        os.makedirs(args.out, exist_ok=True)
        with plt.rc_context(STYLE):
            for name, plot in FIGURES.items():
                fig = plot(series)
                if fig is None:
                    continue
                for ext in formats:
                    path = os.path.join(args.out, f"{name}.{ext}")
                    fig.savefig(path, bbox_inches="tight", dpi=200)
                    print(f"wrote {path}")
                plt.close(fig)
    except OSError as e:
        sys.stderr.write(f"plot: cannot write into {args.out} ({e.strerror or e}); choose another --out\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
