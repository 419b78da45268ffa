"""The original's wideresnet.py: Wide ResNet built from Meta layers (mwnet/models/wideresnet.py).

from wideresnet import WideResNet, VNet
model = WideResNet(28, num_classes=10, widen_factor=10, dropRate=0.0)  # WRN-28-10: 36,479,194 parameters
"""

from mwnet.models.wideresnet import BasicBlock, NetworkBlock, VNet, WideResNet

__all__ = ["WideResNet", "VNet", "BasicBlock", "NetworkBlock"]
