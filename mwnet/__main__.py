"""python -m mwnet COMMAND [flags] (or the console script `mwnet`): the project's commands, from any directory.

    python -m mwnet MW-Net.py --dataset fashionmnist --dry_run --out runs/smoke   # = python MW-Net.py ... in a checkout
    python -m mwnet train_WRN-28-10_Meta_PGC.py --dataset cifar10 --data_path ./data
    python -m mwnet laptop                            # the first command: MW-Net beside plain training on a CPU
    python -m mwnet runner commands.txt --gpus 0,1      # = python scripts/runner.py ...
    python -m mwnet summarize --runs runs
    python -m mwnet plot runs/a runs/b --out figures
    python -m mwnet suspects runs/a                     # the labels a run finds suspect, and their images
    python -m mwnet split --dataset cifar10 --download  # = python load_corrupted_data.py ...
Each command takes the flags of its script (COMMAND --help).
"""

import importlib
import sys

TRAINING = ("MW-Net.py", "train_WRN-28-10_Meta_PGC.py")
TOOLS = ("laptop", "runner", "summarize", "plot", "suspects", "split")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    usage = f"usage: python -m mwnet {{{','.join(TRAINING + TOOLS)}}} [flags]"
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        return 0
    if not argv or argv[0] not in TRAINING + TOOLS:
        sys.stderr.write(f"mwnet: {f'unknown command {argv[0]!r}; ' if argv else ''}{usage}\n")
        return 2
    command, rest = argv[0], argv[1:]
    if command in TRAINING:
        from mwnet.engine.launch import main as train

        return train(command, rest)
    # Each command's usage line names it as typed: "usage: python -m mwnet summarize ..." (argparse takes its
    # program name from sys.argv[0]), for the command's life only.
    program, sys.argv[0] = sys.argv[0], f"python -m mwnet {command}"
    try:
        if command == "split":
            from mwnet.tools.split import command as split

            return split(rest)
        return importlib.import_module(f"mwnet.tools.{command}").main(rest)
    finally:
        sys.argv[0] = program


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # while the command's modules load (the commands handle it once running)
        sys.stderr.write("mwnet: interrupted\n")
        sys.exit(130)
