"""Meta-Weight-Net (Shu et al., NeurIPS 2019) reproduced on today's PyTorch.

The package behind the original's scripts (README, "Layout"):
    mwnet.data     what a run trains and tests on: one spec per dataset (catalog.py), the noise protocol, the
                   datasets' files, the loaders
    mwnet.models   the classifiers and the meta-weight-net, built from Meta layers
    mwnet.method   one spec per method and its iteration: MW-Net, L2RW, plain training
    mwnet.engine   the training loop, its flags and the parts it is built from
    mwnet.runs     what a run writes, reads back and shows
    mwnet.tools    the commands over runs (mwnet.__main__.TOOLS): laptop, runner, summarize (with by_config.py,
                   and ablations.py's table), plot, suspects, split
Commands: python -m mwnet --help.

The method in one's own training loop (examples/own_loop.py): `from mwnet import VNet, mwnet_step` (and
`l2rw_step`), which work with any nn.Module; imported on first use, so that the commands start without torch.
"""

import importlib

__version__ = "1.1.0"

_PUBLIC = {"mwnet_step": "mwnet.method.meta_step", "l2rw_step": "mwnet.method.meta_step"}
_PUBLIC["VNet"] = "mwnet.models.meta_layers"
__all__ = ["VNet", "l2rw_step", "mwnet_step"]


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'mwnet' has no attribute {name!r}")
