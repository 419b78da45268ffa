"""Meta-Weight-Net with ResNet-32, counted in epochs: the original MW-Net.py.

Defaults reproduce the original: 120 epochs over the noisy training set (shuffled), batch 100,
SGD lr 0.1 (x0.1 at epochs 80 and 100), momentum 0.9, weight decay 5e-4; meta-weight-net Adam
lr 1e-3, weight decay 1e-4; mean weighted loss; test accuracy after every epoch.

    python MW-Net.py --dataset cifar10 --corruption_type unif --corruption_prob 0.6
    python MW-Net.py --dataset fashionmnist --corruption_prob 0.6 --method erm --out runs/fm-erm
    python MW-Net.py --dataset cifar10 --dry_run --out runs/smoke    # the whole path in seconds
    python MW-Net.py --resume runs/fm-erm                             # continue a stopped run
Run files: docs/usage.md, "Run files". Every flag: python MW-Net.py --help.
"""

import sys

try:
    from mwnet.engine.launch import main
except KeyboardInterrupt:  # Ctrl-C while torch loads: one line, as everywhere else
    sys.stderr.write("MW-Net.py: interrupted while starting; nothing was written\n")
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main("MW-Net.py"))
