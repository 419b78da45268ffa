"""SmallCNN: the laptop protocol's classifier (docs/results-fashion-mnist.md), built from Meta layers.

from mwnet.models.small import SmallCNN
model = SmallCNN(num_classes=10)  # 268,698 parameters for 10 classes

Of the paper's kind (convolutions with BatchNorm, trained by the same meta step) but small enough that a
whole MW-Net run on 5,000 Fashion-MNIST images fits minutes of one CPU core: two 3x3 convolutions of 16 and
32 channels, each with BatchNorm, a 2x2 max-pool and ReLU, then a hidden layer of 128 units, which gives it
the capacity to memorise noisy labels, the effect the method exists to resist.
"""

import torch.nn as nn
import torch.nn.functional as F

from mwnet.models.meta_layers import MetaBatchNorm2d, MetaConv2d, MetaLinear, MetaModule

__all__ = ["SmallCNN"]


class SmallCNN(MetaModule):
    def __init__(self, num_classes, in_size=32):
        super().__init__()
        self.conv1 = MetaConv2d(3, 16, kernel_size=3, padding=1, bias=False)
        self.bn1 = MetaBatchNorm2d(16)
        self.conv2 = MetaConv2d(16, 32, kernel_size=3, padding=1, bias=False)
        self.bn2 = MetaBatchNorm2d(32)
        self.fc = MetaLinear(32 * (in_size // 4) ** 2, 128)
        self.linear = MetaLinear(128, num_classes)
        for m in self.modules():
            if isinstance(m, (MetaLinear, MetaConv2d)):
                nn.init.kaiming_normal_(m.weight)  # as the ResNet-32 of the original

    def forward(self, x):
        # ReLU after the pool: max(relu(a), relu(b)) = relu(max(a, b)), so the same values, gradients and forward-mode
        # tangents to the bit (both only select), with ReLU and its derivatives on a quarter of the elements
        out = F.relu(F.max_pool2d(self.bn1(self.conv1(x)), 2))
        out = F.relu(F.max_pool2d(self.bn2(self.conv2(out)), 2))
        return self.linear(F.relu(self.fc(out.flatten(1))))
