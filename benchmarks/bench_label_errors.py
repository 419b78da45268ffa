"""Finding the corrupted labels: MW-Net's ranking (samples.csv) beside cleanlab's, on the laptop protocol.

    pip install cleanlab            # for this benchmark only: the package does not need it
    OMP_NUM_THREADS=1 python benchmarks/bench_label_errors.py --setting "unif 0.4" --out runs/bench_label_errors
    OMP_NUM_THREADS=1 python benchmarks/bench_label_errors.py --setting "flip2 0.4" --out runs/bench_label_errors
    OMP_NUM_THREADS=1 python benchmarks/bench_label_errors.py --setting "flip2 0.4" --out runs/bench_label_errors --retrain
    python benchmarks/bench_label_errors.py --summarize runs/bench_label_errors     # mean ± std over the seeds run

For one noise setting of Fashion-MNIST (the laptop protocol: SmallCNN, the fixed 5,000 training images, 40
epochs, lr 0.02, no augmentation), on the CPU:
  MW-Net        one run of MW-Net.py --protocol laptop; the training labels ranked from its samples.csv by the
                final meta-weight-net's weight of the final model's loss (lowest first, ties averaged); by that
                loss (the file's order); by the mean weight each sample received over the last epoch of training
                (here its weight in the last shuffled pass); and by the loss
                of its best model (the file --evaluate writes of model_best.pt, chosen by test accuracy as the
                original's "best": it reads the test labels), and of the model chosen by the meta set's
                accuracy (model_meta_best.pt: no test label read)
  MW-Net, selected   the same with --meta_source selected: no clean label read, as on a folder without meta/
  plain         one run of plain training (--method erm), the same schedule; samples.csv ranks by final loss,
                and its best model's file by that model's loss
  history       for each of the three runs, samples.csv's history of each sample in training: its mean loss and
                mean margin over every draw, and over the draws before the first lr drop (highest loss, lowest
                margin first)
  cleanlab      K-fold cross-validation of plain training with the same classifier, schedule and epochs (each fold
                model 40 epochs over the other K-1 folds); cleanlab.rank.get_label_quality_scores (self-confidence)
                of the out-of-fold probabilities ranks the labels, and cleanlab.filter.find_label_issues flags a set
                (OUT/SETTING_seedK/cleanlab.csv: the flagged first, as a samples file that --exclude reads)
Prints, for each: AUROC of the ranking against the truly corrupted labels, precision at k (k = the number of
corrupted labels), the flagged set's size, precision and recall (cleanlab's), and the wall time on this machine.
AUROC is computed here (average ranks for ties) and checked against scikit-learn's, which cleanlab brings.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


HISTORY = (("mean_loss", 1), ("mean_margin", -1), ("early_loss", 1), ("early_margin", -1))  # samples.csv's
HISTORY_NAMES = {
    "mean_loss": "mean training loss",
    "mean_margin": "mean margin (lowest first)",
    "early_loss": "mean loss before the lr drop",
    "early_margin": "mean margin before the lr drop",
}


def average_ranks(x):
    """1-based ranks of x, tied values sharing their average rank."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    values, first, counts = np.unique(x[order], return_index=True, return_counts=True)
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)
    return ranks


def auroc(suspicion, corrupted):
    """The chance that a corrupted label is more suspect than a clean one (ties count half): Mann-Whitney U."""
    corrupted = np.asarray(corrupted, dtype=bool)
    positives, negatives = corrupted.sum(), (~corrupted).sum()
    if not positives or not negatives:
        return float("nan")
    ranks = average_ranks(suspicion)
    return float((ranks[corrupted].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def precision_at_k(suspicion, corrupted):
    """The share of corrupted labels among the k most suspect, k the number of corrupted labels (ties by position)."""
    corrupted = np.asarray(corrupted, dtype=bool)
    k = int(corrupted.sum())
    order = np.lexsort((np.arange(len(corrupted)), -np.asarray(suspicion, dtype=np.float64)))
    return float(corrupted[order[:k]].mean()) if k else float("nan")


def training_args(setting, seed, method, out, epochs=None):
    from mwnet.engine.options import parse_args

    kind, p = setting.split()
    argv = ["--protocol", "laptop", "--dataset", "fashionmnist", "--corruption_type", kind, "--corruption_prob", p]
    if method == "mwnet_selected":
        method, argv = "mwnet", argv + ["--meta_source", "selected"]
    argv += ["--seed", str(seed), "--method", method, "--device", "cpu", "--out", out]
    if epochs:  # a shortened check of the benchmark itself
        argv += ["--epochs", str(epochs), "--milestones"] + (
            ["--warmup", str(epochs / 2)] if "--meta_source" in argv else []
        )
    return argv, parse_args("MW-Net.py", argv)


def run_script(argv):
    """One training run through MW-Net.py, in this process, then --evaluate of its best model: (its samples.csv,
    the seconds it took), (the best model's samples file, the seconds the evaluation added)."""
    from mwnet.engine.launch import main
    from mwnet.runs.run_files import read_samples

    out = argv[argv.index("--out") + 1]
    timed = []
    models = ["model_best.pt"] + (["model_meta_best.pt"] if "erm" not in argv else [])  # plain: no meta set
    for words in [argv] + [["--evaluate", os.path.join(out, m), "--device", "cpu"] for m in models]:
        start = time.perf_counter()
        code = main("MW-Net.py", words)
        timed.append(time.perf_counter() - start)
        if code != 0:
            raise SystemExit(f"MW-Net.py {' '.join(words)} ended with {code}")
    files = [[f for f in os.listdir(out) if f.startswith(f"samples-{kind}-it")] for kind in ("best", "metabest")]
    chosen = [(read_samples(os.path.join(out, f[0])), t) for f, t in zip(files, timed[1:], strict=False)]
    return (read_samples(out), timed[0]), *chosen


def by_position(rows, train_idx):
    """samples.csv's rows reordered to the training set's order (split.npz's train_idx)."""
    where = {int(i): p for p, i in enumerate(train_idx)}
    order = np.asarray([where[int(i)] for i in rows["index"]])
    out = {}
    for name, values in rows.items():
        column = np.empty(len(values), dtype=object)
        column[order] = values
        out[name] = column
    return out


def cross_validated(setting, seed, folds, epochs=None):
    """Out-of-fold predicted probabilities of plain training, K folds stratified by the noisy labels; the noisy
    labels and the truly corrupted flags, in the training set's order."""
    import torch
    from sklearn.model_selection import StratifiedKFold

    from mwnet.engine.components import build_data, build_learner, run_seeds
    from mwnet.engine.training import make_plan
    from mwnet.method.meta_step import erm_step

    _, args = training_args(setting, seed, "erm", "unused", epochs)
    device = torch.device("cpu")
    seeds = run_seeds(seed)
    data = build_data(args, device, seeds)
    noisy = data.noisy_labels
    probs = np.zeros((len(noisy), data.num_classes))
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (train_at, held_at) in enumerate(split.split(np.zeros(len(noisy)), noisy)):
        loader = data.training_loader(train_at, args.augment, "epoch", seeds[1] + fold)
        plan = make_plan(args, len(loader), len(train_at))
        learner = build_learner(args, data.num_classes, device, seeds[0] + fold)
        for step in range(plan.total):
            for group in learner.optimizer.param_groups:
                group["lr"] = plan.lr_at(step)
            x, y, _ = loader.next_batch()
            erm_step(learner.model, learner.optimizer, x, y)
        model = learner.model.eval()
        with torch.no_grad():
            held = data.training_loader(held_at)
            probs[held_at] = torch.cat([model(x).softmax(1) for x, _, _ in held.in_order()]).double().numpy()
        print(f"  fold {fold + 1}/{folds}: {plan.total} iterations on {len(train_at)} images", flush=True)
    return probs, noisy, data.clean_labels != noisy, data.train_idx


def write_cleanlab_ranking(path, quality, flagged, noisy, corrupted, train_idx):
    """cleanlab's verdict as a samples file (samples.csv's columns, the others empty) for clean and retrain:
    find_label_issues' flagged samples first, then the rest, each part by self-confidence (least first), so that
    `--exclude FILE --exclude_top F`, F the number flagged (in the JSON), leaves out exactly the flagged set."""
    import csv

    from mwnet.runs.run_files import SAMPLE_COLUMNS

    order = np.lexsort((np.arange(len(quality)), quality, ~np.asarray(flagged, dtype=bool)))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(SAMPLE_COLUMNS)
        for rank, p in enumerate(order, 1):
            row = dict.fromkeys(SAMPLE_COLUMNS, "")
            row.update(rank=rank, index=int(train_idx[p]), given_label=int(noisy[p]), corrupted=int(corrupted[p]))
            writer.writerow([row[c] for c in SAMPLE_COLUMNS])


def retrain(out, setting, seed, epochs=None):
    """Clean and retrain (--retrain): plain training again without the F most suspect labels of MW-Net's ranking
    (its run's final checkpoint --evaluated: samples-it<N>.csv in the order samples.csv takes now, which the
    benchmark chose) and without cleanlab's flagged set (F labels: cleanlab.csv's top), beside the runs on the
    whole set. Reads SETTING_seedK.json (F) and the runs under OUT/SETTING_seedK; writes SETTING_seedK_retrain.json."""
    from mwnet.engine.launch import main as train
    from mwnet.engine.samples import ORDER
    from mwnet.runs.run_files import read_json, read_samples

    name = f"{setting.replace(' ', '_')}_seed{seed}"
    with open(os.path.join(out, f"{name}.json")) as f:
        flagged = json.load(f)["cleanlab"]["flagged"]
    folder = os.path.join(out, name)
    ranked = os.path.join(folder, "mwnet")
    if train("MW-Net.py", ["--evaluate", ranked, "--device", "cpu"]) != 0:
        raise SystemExit(f"--evaluate {ranked} failed")
    step = read_json(os.path.join(ranked, "results.json"))["iterations"]
    sources = {
        "erm_clean_mwnet": os.path.join(ranked, f"samples-it{step}.csv"),
        "erm_clean_cleanlab": os.path.join(folder, "cleanlab.csv"),
    }
    record = {"setting": setting, "seed": seed, "excluded": flagged, "mwnet_order": ORDER, "epochs": epochs}
    for row, source in sources.items():
        run = os.path.join(folder, row)
        argv, _ = training_args(setting, seed, "erm", run, epochs)
        if train("MW-Net.py", [*argv, "--exclude", source, "--exclude_top", str(flagged)]) != 0:
            raise SystemExit(f"the run into {run} failed")
        gone = read_samples(source)["corrupted"][:flagged]
        record[row] = {"source": os.path.relpath(source, out), "corrupted_excluded": sum(c == "1" for c in gone)}
    for row in ("erm_clean_mwnet", "erm_clean_cleanlab", "mwnet", "erm"):
        results = read_json(os.path.join(folder, row, "results.json"))
        record.setdefault(row, {}).update(best=results["best_test_acc"], last=results["last_test_acc"])
    path = os.path.join(out, f"{name}_retrain.json")
    with open(path, "w") as f:
        json.dump(record, f, indent=2)
    print(f"wrote {path}")


RETRAIN_ROWS = {
    "erm": "plain training, every label",
    "mwnet": "MW-Net, every label",
    "erm_clean_mwnet": "plain training without MW-Net's F most suspect",
    "erm_clean_cleanlab": "plain training without cleanlab's flagged set (F labels)",
}


def records_by_setting(folder, retrain):
    """The JSON files this benchmark wrote under folder (SETTING_seedK.json, or its _retrain.json), grouped by
    setting, and a line for each shortened check (--epochs) left out."""
    import glob

    by_setting, out = {}, []
    for path in sorted(glob.glob(os.path.join(folder, "*_seed*.json"))):
        if path.endswith("_retrain.json") != retrain:
            continue
        with open(path) as f:
            record = json.load(f)
        if record.get("epochs"):
            out.append(f"left out {path}: a shortened check (--epochs {record['epochs']}), not a result")
            continue
        by_setting.setdefault(record["setting"], []).append(record)
    first = ["unif 0.4", "flip2 0.4", "flip 0.4", "unif 0.6"]  # the issue's settings, then the retrain's
    ordered = sorted(by_setting, key=lambda s: (first.index(s) if s in first else len(first), s))
    return {s: by_setting[s] for s in ordered}, out


def summarize_retrain(folder):
    """The clean-and-retrain table per setting: test accuracy best and last, mean ± std over the seeds."""
    by_setting, out = records_by_setting(folder, retrain=True)
    for setting, records in by_setting.items():
        seeds = ", ".join(str(r["seed"]) for r in sorted(records, key=lambda r: r["seed"]))
        order = sorted({r["mwnet_order"] for r in records})
        excluded = ", ".join(str(r["excluded"]) for r in records)
        out += ["", f"{setting} noise, clean and retrain, seeds {seeds} (F = {excluded}; MW-Net's ranking by"]
        out[-1] += f" {', '.join(order)}): test accuracy, mean ± std over the seeds"
        out += ["", "| training | best | last | corrupted among the F left out |", "|---|---|---|---|"]
        for row, label in RETRAIN_ROWS.items():
            cells = []
            for field in ("best", "last"):
                values = np.array([r[row][field] for r in records], dtype=float)
                spread = f" ± {values.std(ddof=1):.2f}" if len(values) > 1 else ""
                cells.append(f"{values.mean():.2f}{spread}")
            gone = [r[row]["corrupted_excluded"] / r["excluded"] for r in records if "corrupted_excluded" in r[row]]
            cells.append(f"{np.mean(gone):.3f}" if gone else "-")
            out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


HEADLINE = (
    ("mwnet_early_loss", "MW-Net: mean loss before the lr drop (samples.csv's order)"),
    ("mwnet", "MW-Net: the final loss (samples.csv's order before)"),
    ("mwnet_metabest", "MW-Net: the meta-chosen model's loss"),
    ("mwnet_selected_early_loss", "MW-Net, selected meta set: mean loss before the lr drop"),
    ("erm_early_loss", "plain training: mean loss before the lr drop"),
    ("cleanlab", "cleanlab: 5-fold out-of-fold self-confidence"),
)


def _mean_std(values, digits):
    values = np.asarray(values, dtype=float)
    spread = f" ± {values.std(ddof=1):.{digits}f}" if len(values) > 1 else ""
    return f"{values.mean():.{digits}f}{spread}"


def headline(by_setting):
    """One table over the settings: samples.csv's order beside the final loss, the meta-chosen model, the
    selected meta set, plain training and cleanlab; AUROC and P@k, mean ± std over the seeds, and the wall time
    of the run (cleanlab's: its five fold models), mean over every seed and setting."""
    settings = list(by_setting)
    head = "| ranking | " + " | ".join(f"{s}: AUROC | P@k" for s in settings) + " | wall s |"
    out = ["", f"Over the settings (seeds: {', '.join(f'{s} {len(r)}' for s, r in by_setting.items())})", ""]
    out += [head, "|---|" + "---|---|" * len(settings) + "---|"]
    for key, label in HEADLINE:
        cells, seconds = [], []
        for setting in settings:
            rows = [r[key] for r in by_setting[setting] if key in r]
            cells += [_mean_std([x["auroc"] for x in rows], 3), _mean_std([x["precision_at_k"] for x in rows], 3)]
            seconds += [x["seconds"] for x in rows]
        out.append(f"| {label} | " + " | ".join(cells) + f" | {np.mean(seconds):.0f} |")
    return out


def summarize(folder):
    """A Markdown table per setting: each ranking's AUROC, precision at k and wall time, mean ± std over the seeds
    of the JSON files this benchmark wrote (SETTING_seedK.json); a shortened check (--epochs) is left out."""
    import glob

    by_setting, out = records_by_setting(folder, retrain=False)
    out += headline(by_setting) if by_setting else []
    for setting, records in by_setting.items():
        seeds = sorted(r["seed"] for r in records)
        out += ["", f"{setting} noise, seeds {', '.join(map(str, seeds))}: mean ± std over the seeds", ""]
        out += ["| ranking | AUROC | P@k | wall s |", "|---|---|---|---|"]
        keys = [k for k, v in records[0].items() if isinstance(v, dict) and "auroc" in v]
        for key in keys:
            rows = [r[key] for r in records if key in r]
            cells = []
            for field, digits in (("auroc", 3), ("precision_at_k", 3), ("seconds", 0)):
                values = np.array([row[field] for row in rows], dtype=float)
                spread = f" ± {values.std(ddof=1):.{digits}f}" if len(values) > 1 else ""
                cells.append(f"{values.mean():.{digits}f}{spread}")
            out.append(f"| {rows[0].get('name', key)} (n={len(rows)}) | " + " | ".join(cells) + " |")
    out += [summarize_retrain(folder)] if glob.glob(os.path.join(folder, "*_retrain.json")) else []
    return "\n".join(out) if out else f"no result of this benchmark under {folder}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setting", default="unif 0.4", help="noise type and probability (default: 'unif 0.4')")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--folds", type=int, default=5, help="cleanlab's cross-validation folds (default: 5, its own)")
    p.add_argument("--out", default="runs/bench_label_errors", help="where the two training runs go")
    p.add_argument(
        "--epochs", type=int, default=None, help="a shorter run than the protocol's 40 epochs, to check this script"
    )
    p.add_argument(
        "--summarize",
        metavar="DIR",
        default=None,
        help="train nothing: the mean and spread over seeds of the JSON files (SETTING_seedK.json) under DIR",
    )
    p.add_argument(
        "--retrain",
        action="store_true",
        help="after the benchmark of this setting and seed (its JSON and runs under --out): clean and retrain, plain training without MW-Net's and without cleanlab's suspects",
    )
    args = p.parse_args(argv)
    if args.summarize:
        print(summarize(args.summarize))
        return
    if args.retrain:
        retrain(args.out, args.setting, args.seed, args.epochs)
        return
    try:
        import cleanlab
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
        from sklearn.metrics import roc_auc_score
    except ImportError:
        raise SystemExit("this benchmark needs cleanlab: pip install cleanlab") from None
    import torch

    name = args.setting.replace(" ", "_")
    results = {}
    # cleanlab first: its folds are the training set of the runs' split (the same seed, the same noisy labels)
    start = time.perf_counter()
    probs, noisy, corrupted, train_idx = cross_validated(args.setting, args.seed, args.folds, args.epochs)
    trained = time.perf_counter() - start
    start = time.perf_counter()
    quality = get_label_quality_scores(noisy, probs)
    flagged = find_label_issues(noisy, probs)
    found = time.perf_counter() - start
    results["cleanlab"] = {"suspicion": -quality, "flagged": flagged, "seconds": trained + found}
    folder = os.path.join(args.out, f"{name}_seed{args.seed}")
    write_cleanlab_ranking(os.path.join(folder, "cleanlab.csv"), quality, flagged, noisy, corrupted, train_idx)
    for method in ("mwnet", "mwnet_selected", "erm"):
        out = os.path.join(folder, method)  # one folder per seed: never another seed's run
        argv, _ = training_args(args.setting, args.seed, method, out, args.epochs)
        (rows, seconds), (best, more), *by_meta = run_script(argv)
        rows, best = by_position(rows, train_idx), by_position(best, train_idx)
        if by_meta:  # the model chosen by the meta set's accuracy: no test label read
            ((chosen, extra),) = by_meta
            chosen = by_position(chosen, train_idx)
            results[method + "_metabest"] = {
                "suspicion": -chosen["rank"].astype(np.float64),
                "seconds": seconds + extra,
            }
        # the selected meta set's images stay in the training set; the clean meta set's are outside it
        if not np.array_equal(rows["corrupted"].astype(np.int64), corrupted.astype(np.int64)):
            raise SystemExit("the runs' corrupted labels differ from the cross-validation's: not the same split")
        results[method] = {"suspicion": -rows["rank"].astype(np.float64), "seconds": seconds}
        results[method + "_best"] = {"suspicion": -best["rank"].astype(np.float64), "seconds": seconds + more}
        if method != "erm":
            weight = rows["weight"].astype(np.float64)
            results[method + "_weight"] = {"suspicion": -weight, "seconds": seconds}
        if method == "mwnet":
            recent = np.asarray([float(w) if w else np.nan for w in rows["epoch_weight"]])
            results["mwnet_epoch"] = {"suspicion": -recent, "seconds": seconds}
        for column, sign in HISTORY:  # the run's own history: a high mean loss, a low mean margin, is suspect
            values = np.asarray([float(v) if v else np.nan for v in rows[column]])
            results[f"{method}_{column}"] = {"suspicion": sign * values, "seconds": seconds}
    k, n = int(corrupted.sum()), len(corrupted)
    print(
        f"Fashion-MNIST laptop protocol, {args.setting} noise, seed {args.seed}: {k} of {n} training labels corrupted;"
        f" torch {torch.__version__}, cleanlab {cleanlab.__version__}, {torch.get_num_threads()} CPU thread(s)"
    )
    names = {
        "mwnet_weight": "MW-Net: final weight V(loss)",
        "mwnet": "MW-Net: final loss (samples.csv order)",
        "mwnet_epoch": "MW-Net: mean weight, last epoch",
        "mwnet_best": "MW-Net: best model's loss (test-chosen)",
        "mwnet_metabest": "MW-Net: meta-chosen model's loss",
        "mwnet_selected_weight": "MW-Net, selected meta set: final weight",
        "mwnet_selected": "MW-Net, selected: final loss",
        "mwnet_selected_best": "MW-Net, selected: best model's loss",
        "mwnet_selected_metabest": "MW-Net, selected: meta-chosen model's loss",
        "erm": "plain training: final loss",
        "erm_best": "plain training: best model's loss",
        "cleanlab": f"cleanlab: {args.folds}-fold self-confidence",
    }
    short = {"mwnet": "MW-Net", "mwnet_selected": "MW-Net, selected", "erm": "plain training"}
    for method, label in short.items():
        for column, _ in HISTORY:
            names[f"{method}_{column}"] = f"{label}: {HISTORY_NAMES[column]}"
    print(f"{'ranking':<50} {'AUROC':>6} {'P@k':>6} {'flagged':>8} {'prec':>6} {'recall':>6} {'wall s':>7}")
    record = {"setting": args.setting, "seed": args.seed, "corrupted": k, "n": n, "folds": args.folds}
    record["epochs"] = args.epochs  # set: a shortened check of this script, never a result
    record.update(torch=torch.__version__, cleanlab_version=cleanlab.__version__, threads=torch.get_num_threads())
    for key in names:
        r = results[key]
        suspicion = np.nan_to_num(r["suspicion"], nan=-np.inf)  # never drawn: least suspect
        a = auroc(suspicion, corrupted)
        reference = roc_auc_score(corrupted, suspicion)
        if not np.isclose(a, reference, atol=1e-9):
            raise SystemExit(f"AUROC {a} differs from scikit-learn's {reference}")
        pk = precision_at_k(suspicion, corrupted)
        row = {"name": names[key], "auroc": a, "precision_at_k": pk, "seconds": r["seconds"]}
        flagged = ""
        if "flagged" in r:
            f = r["flagged"]
            row.update(flagged=int(f.sum()), precision=float(corrupted[f].mean()), recall=float(f[corrupted].mean()))
            flagged = f"{row['flagged']:>8} {row['precision']:>6.3f} {row['recall']:>6.3f}"
        else:
            flagged = f"{'-':>8} {'-':>6} {'-':>6}"
        print(f"{names[key]:<50} {a:>6.3f} {pk:>6.3f} {flagged} {r['seconds']:>7.0f}")
        record[key] = row
    path = os.path.join(args.out, f"{name}_seed{args.seed}.json")
    with open(path, "w") as f:
        json.dump(record, f, indent=2)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
