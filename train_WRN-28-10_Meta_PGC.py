"""Meta-Weight-Net with WRN-28-10, counted in iterations: the original train_WRN-28-10_Meta_PGC.py.

Defaults reproduce the original: 20,000 iterations, each on a fresh random batch of 100,
SGD lr 0.1 (x0.1 at iterations 18,000 and 19,000), Nesterov momentum 0.9, weight decay 5e-4;
meta-weight-net SGD lr 1e-3, Nesterov momentum 0.9, weight decay 5e-4; weights normalised by
their sum; test accuracy every 100 iterations.

    python train_WRN-28-10_Meta_PGC.py --dataset cifar10 --corruption_type unif --corruption_prob 0.6
    python train_WRN-28-10_Meta_PGC.py --dataset cifar100 --corruption_prob 0.4 --method l2rw --out runs/c100-l2rw
    python train_WRN-28-10_Meta_PGC.py --dry_run --layers 10 --widen-factor 1 --out runs/smoke
Run files: docs/usage.md, "Run files". Every flag: python train_WRN-28-10_Meta_PGC.py --help.
"""

import sys

try:
    from mwnet.engine.launch import main
except KeyboardInterrupt:  # Ctrl-C while torch loads: one line, as everywhere else
    sys.stderr.write("train_WRN-28-10_Meta_PGC.py: interrupted while starting; nothing was written\n")
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main("train_WRN-28-10_Meta_PGC.py"))
