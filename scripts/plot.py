"""The paper's figures from run directories, as PNG files.

    python scripts/plot.py runs/fm-u60 runs/fm-u60-erm --out figures/
writes, for the runs given:
    weighting_function.png  the learned weight V(loss) against the loss, at the last evaluation
    weight_histograms.png   the weights of clean and of noisy training samples (weights.npz), per run
    test_accuracy.png       test accuracy over training, per run
Runs without a meta-weight-net (L2RW, plain training) are left out of the first figure.
"""

import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def load_run(run_dir):
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        metrics = [json.loads(line) for line in f if line.strip()]
    weights_path = os.path.join(run_dir, "weights.npz")
    weights = dict(np.load(weights_path)) if os.path.exists(weights_path) else None
    return {"dir": run_dir, "config": config, "metrics": metrics, "weights": weights, "label": label(config, run_dir)}


def label(config, run_dir=""):
    if config.get("imb_factor"):
        setting = f"imbalance {config['imb_factor']:g}"
    else:
        setting = f"{config['corruption_type']} {100 * config['corruption_prob']:g}%"
    # A table's row folder names a variant of the method (erm_long: plain training, BaseModel schedule).
    row = os.path.basename(os.path.dirname(os.path.normpath(run_dir))) if run_dir else ""
    method = row if row.startswith(config["method"] + "_") else config["method"]
    return f"{method}, {config['dataset']}, {setting}, seed {config['seed']}"


def save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_weighting_functions(runs, path):
    runs = [r for r in runs if r["metrics"] and r["metrics"][-1].get("vnet_curve")]
    if not runs:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in runs:
        ax.plot(r["config"]["vnet_loss_grid"], r["metrics"][-1]["vnet_curve"], label=r["label"])
    ax.set_xlabel("training loss")
    ax.set_ylabel("weight V(loss)")
    ax.set_title("Learned weighting function")
    ax.legend(fontsize=7)
    return save(fig, path)


def plot_weight_histograms(runs, path):
    runs = [r for r in runs if r["weights"] is not None and r["config"]["method"] != "erm"]
    if not runs:
        return False
    fig, axes = plt.subplots(1, len(runs), figsize=(4.5 * len(runs), 3.5), squeeze=False)
    for ax, r in zip(axes[0], runs, strict=True):
        w, noisy = r["weights"]["weight"], r["weights"]["is_noisy"].astype(bool)
        seen = ~np.isnan(w)
        bins = np.linspace(np.nanmin(w), np.nanmax(w) + 1e-12, 40)
        ax.hist(w[seen & ~noisy], bins=bins, alpha=0.6, label=f"clean ({(seen & ~noisy).sum()})")
        ax.hist(w[seen & noisy], bins=bins, alpha=0.6, label=f"noisy ({(seen & noisy).sum()})")
        ax.set_xlabel("weight")
        ax.set_title(r["label"], fontsize=8)
        ax.legend(fontsize=7)
    return save(fig, path)


def plot_test_accuracy(runs, path):
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in runs:
        ax.plot([m["epoch"] for m in r["metrics"]], [m["test_acc"] for m in r["metrics"]], marker="o", label=r["label"])
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=7)
    return save(fig, path)


def main(argv=None):
    p = argparse.ArgumentParser(description="Plot the paper's figures from run directories.")
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("--out", default="figures", help="folder for the PNG files (default: figures)")
    args = p.parse_args(argv)
    missing = [d for d in args.runs if not os.path.exists(os.path.join(d, "metrics.jsonl"))]
    if missing:
        sys.stderr.write(
            f"plot: {missing[0]} is not a run directory with metrics.jsonl; pass run directories of MW-Net.py or the WRN script\n"
        )
        return 2
    runs = [load_run(d) for d in args.runs]
    os.makedirs(args.out, exist_ok=True)
    figures = {
        "weighting_function.png": plot_weighting_functions,
        "weight_histograms.png": plot_weight_histograms,
        "test_accuracy.png": plot_test_accuracy,
    }
    for name, plot in figures.items():
        if plot(runs, os.path.join(args.out, name)):
            print(f"wrote {os.path.join(args.out, name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
