"""Meta-Weight-Net (Shu et al., NeurIPS 2019) reproduced on today's PyTorch.

The package behind the original's scripts (README, "Layout"):
    mwnet.data     what a run trains and tests on: the noise protocol, the datasets' files, the loaders
    mwnet.models   the classifiers and the meta-weight-net, built from Meta layers
    mwnet.method   one iteration of each method: MW-Net, L2RW, plain training
    mwnet.engine   the training loop, its flags and the parts it is built from
    mwnet.runs     what a run writes, reads back and shows
    mwnet.tools    commands over runs: the runner, the summary, the figures, the split
Commands: python -m mwnet --help.
"""

__version__ = "1.1.0"
