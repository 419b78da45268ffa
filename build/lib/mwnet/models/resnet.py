"""ResNet-32 for CIFAR (He et al. 2016, option-A shortcuts) built from Meta layers, as the original.

from mwnet.models.resnet import ResNet32, VNet
model = ResNet32(num_classes=10)  # 464,154 parameters for 10 classes
"""

import torch.nn as nn
import torch.nn.functional as F

from mwnet.models.meta_layers import MetaBatchNorm2d, MetaConv2d, MetaLinear, MetaModule, VNet

__all__ = ["ResNet32", "ResNet34", "VNet", "BasicBlock", "ProjectionBlock"]


class BasicBlock(MetaModule):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = MetaConv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = MetaBatchNorm2d(planes)
        self.conv2 = MetaConv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = MetaBatchNorm2d(planes)
        # Option A: the shortcut subsamples by 2 and pads the new channels with zeros (no parameters).
        self.pad_channels = planes // 4 if stride != 1 or in_planes != planes else None

    def shortcut(self, x):
        if self.pad_channels is None:
            return x
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad_channels, self.pad_channels))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet32(MetaModule):
    def __init__(self, num_classes, block=BasicBlock, num_blocks=(5, 5, 5)):
        super().__init__()
        self.in_planes = 16
        self.conv1 = MetaConv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = MetaBatchNorm2d(16)
        self.layer1 = self._make_layer(block, 16, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, 32, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 64, num_blocks[2], stride=2)
        self.linear = MetaLinear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (MetaLinear, MetaConv2d)):
                nn.init.kaiming_normal_(m.weight)  # the original's init; Linear keeps its default bias

    def _make_layer(self, block, planes, num_blocks, stride):
        layers = []
        for s in [stride] + [1] * (num_blocks - 1):
            layers.append(block(self.in_planes, planes, s))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.shape[3]).flatten(1)
        return self.linear(out)


class ProjectionBlock(MetaModule):
    """The standard basic block: conv3x3-BN-ReLU-conv3x3-BN, plus a 1x1 convolution and BatchNorm on the
    shortcut where the width or the resolution changes (option B)."""

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = MetaConv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = MetaBatchNorm2d(planes)
        self.conv2 = MetaConv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = MetaBatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                MetaConv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False), MetaBatchNorm2d(planes)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet34(MetaModule):
    """ResNet-34 of the CIFAR kind, the model of CIFAR-N's cross-entropy protocol (Wei et al., ICLR 2022): a 3x3
    stem of 64 channels and no max-pool, ProjectionBlocks [3, 4, 6, 3] of 64, 128, 256, 512 channels, global
    average pooling and a linear layer; PyTorch's default initialisation, as the authors' model.
    21,282,122 parameters for 10 classes."""

    def __init__(self, num_classes, num_blocks=(3, 4, 6, 3)):
        super().__init__()
        self.in_planes = 64
        self.conv1 = MetaConv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = MetaBatchNorm2d(64)
        self.layer1 = self._make_layer(64, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(128, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(256, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(512, num_blocks[3], stride=2)
        self.linear = MetaLinear(512, num_classes)

    def _make_layer(self, planes, num_blocks, stride):
        layers = []
        for s in [stride] + [1] * (num_blocks - 1):
            layers.append(ProjectionBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))
