"""The first command: the paper's first comparison on the laptop protocol, run on the CPU and reported.

    python -m mwnet laptop                  # MW-Net and plain training side by side, then the report
    python -m mwnet laptop --report-only    # the report of the runs already made
Two runs of MW-Net.py --protocol laptop (docs/results-fashion-mnist.md), 60 % uniform noise, seed 1, one
process each through the runner, into the laptop table's layout:
    RUNS/fashionmnist_laptop/fashionmnist/unif_p0.6/{mwnet,erm}/seed1
(a finished run is not run again, a stopped one is resumed). Then, from the run files alone: MW-Net's best and
last test accuracy beside plain training's, MW-Net's learned weighting function, the mean weight of clean and
of noisy samples, and the figures (RUNS/figures).
"""

import os
import shlex
import sys
import tempfile

from mwnet.cli import Parser
from mwnet.errors import UserError
from mwnet.runs.run_files import config_differences, read_run

ROWS = (("mwnet", "MW-Net"), ("erm", "Plain training"))
SHOWN_LOSSES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 10.0)  # where the weighting function is printed


def run_dirs(runs, prob, seed):
    cell = os.path.join(runs, "fashionmnist_laptop", "fashionmnist", f"unif_p{prob!r}")
    return {row: os.path.join(cell, row, f"seed{seed}") for row, _ in ROWS}


def run_both(args, dirs):
    """The two runs through the runner, one CPU slot each; its exit code."""
    from mwnet.tools import runner

    lines = []
    for row, out in dirs.items():
        words = [sys.executable, "-m", "mwnet", "MW-Net.py", "--protocol", "laptop", "--corruption_prob"]
        words += [repr(args.corruption_prob), "--seed", str(args.seed), "--method", row, "--out", out]
        words += ["--data_path", args.data_path] + (["--download"] if args.download else [])
        lines.append(shlex.join(words))
    with tempfile.NamedTemporaryFile("w", suffix=".commands", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    try:
        return runner.main([f.name, "--gpus", "cpu,cpu"])
    finally:
        os.unlink(f.name)


def finished(path, row, prob, seed):
    """The run in `path`, if it is a finished, non-dry laptop run of `row` at `prob` and `seed`: no other run's
    numbers are shown under the heading that names these."""
    run = read_run(path)
    if run.results is None or run.status != "finished":
        raise UserError(f"{path} is not a finished run ({run.status}); run python -m mwnet laptop to finish it")
    if run.config.get("dry_run"):  # never a result
        raise UserError(f"{path} is a dry run, which is no result; remove it and run python -m mwnet laptop")
    c = run.config
    found = (c.get("protocol"), c.get("method"), c.get("corruption_type"), c.get("corruption_prob"), c.get("seed"))
    if found != ("laptop", row, "unif", prob, seed):
        raise UserError(
            f"{path} holds another run (protocol {found[0]}, method {found[1]}, {found[2]} {found[3]}, seed {found[4]}); move it away and run python -m mwnet laptop"
        )
    return run


def report(dirs, prob, seed):
    """The comparison, as lines of text."""
    runs = {row: finished(path, row, prob, seed) for row, path in dirs.items()}
    differ = config_differences(runs["mwnet"].config, runs["erm"].config, leave_out=("method",))
    if differ:
        raise UserError(f"the two runs differ in more than the method ({'; '.join(differ)}); they do not compare")
    mw = runs["mwnet"]
    wrong = 100 * mw.config["noise_rate"]
    c = mw.config
    lines = [
        f"Fashion-MNIST, {100 * prob:g} % uniform noise ({wrong:.1f} % of the training labels wrong), seed {c['seed']},",
        f"the laptop protocol (SmallCNN, {c['train_subset']:,} training images, {c['epochs']:g} epochs): test accuracy %",
        "",
        f"  {'':<16}{'best':>7}{'last':>7}",
    ]
    for row, name in ROWS:
        r = runs[row].results
        lines.append(f"  {name:<16}{r['best_test_acc']:>7.2f}{r['last_test_acc']:>7.2f}")
    last = mw.metrics[-1]
    grid = mw.config["vnet_loss_grid"]
    shown = [grid.index(x) for x in SHOWN_LOSSES if x in grid]
    lines += [
        "",
        "MW-Net's learned weighting function at the end, weight V(loss) of a sample by its training loss:",
        "  loss   " + "".join(f"{grid[i]:>6g}" for i in shown),
        "  V      " + "".join(f"{last['vnet_curve'][i]:>6.3f}" for i in shown),
        "",
        f"Mean MW-Net weight at the end: clean samples {last['weight_clean']:.3f}, noisy samples {last['weight_noisy']:.3f}",
    ]
    return lines


def main(argv=None):
    p = Parser(
        prog="python -m mwnet laptop",
        description="MW-Net beside plain training on the laptop protocol (two CPU processes), then the comparison.",
    )
    p.add_argument("--runs", default=os.path.join("runs", "laptop"), help="root of the two run directories")
    p.add_argument("--corruption_prob", type=float, default=0.6, help="uniform noise probability")
    p.add_argument("--seed", type=int, default=1, help="seed of both runs")
    p.add_argument("--data_path", default="./data", help="as MW-Net.py's (Fashion-MNIST: the Debian package's folder)")
    p.add_argument("--download", action="store_true", help="as MW-Net.py's: fetch Fashion-MNIST through torchvision")
    p.add_argument("--report-only", action="store_true", help="only the report of runs already made")
    p.add_argument("--figures", default=None, help="folder for the figures (default: RUNS/figures)")
    args = p.parse_args(argv)
    dirs = run_dirs(args.runs, args.corruption_prob, args.seed)
    if not args.report_only:
        code = run_both(args, dirs)
        if code:
            sys.stderr.write(
                "laptop: the runner did not finish both runs (its lines above, and each run's train.log, say why); no comparison to show\n"
            )
            return code
    try:
        lines = report(dirs, args.corruption_prob, args.seed)
    except UserError as e:
        sys.stderr.write(f"laptop: {e}\n")
        return 2
    from mwnet.tools import plot

    figures = args.figures or os.path.join(args.runs, "figures")
    plot.main([*dirs.values(), "--out", figures])
    names = ", ".join(f"{n}.png" for n in plot.FIGURES if os.path.exists(os.path.join(figures, f"{n}.png")))
    print("\n".join(["", *lines, "", f"Figures: {figures}/ ({names})"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
