"""The original's resnet.py: ResNet-32 for CIFAR, built from Meta layers (mwnet/models/resnet.py).

from resnet import ResNet32, VNet
model = ResNet32(num_classes=10)  # 464,154 parameters for 10 classes
"""

from mwnet.models.resnet import BasicBlock, ResNet32, VNet

__all__ = ["ResNet32", "VNet", "BasicBlock"]
