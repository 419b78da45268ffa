"""The original's meta_layers.py: MetaModule and its layers on ordinary PyTorch modules (mwnet/models/meta_layers.py)."""

from mwnet.models.meta_layers import (
    MetaBatchNorm2d,
    MetaConv2d,
    MetaConvTranspose2d,
    MetaLinear,
    MetaModule,
    VNet,
)

__all__ = ["MetaModule", "MetaLinear", "MetaConv2d", "MetaConvTranspose2d", "MetaBatchNorm2d", "VNet"]
