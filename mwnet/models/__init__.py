"""The classifiers and the meta-weight-net, built from Meta layers (meta_layers.py) as the original's were.
A new model: its module here and its name in ARCHS and build_model."""

from mwnet.models.resnet import ResNet32
from mwnet.models.wideresnet import WideResNet

ARCHS = ("resnet32", "wrn")


def build_model(args, num_classes):
    """The classifier a run's flags name (args.arch, and the WideResNet's shape flags)."""
    if args.arch == "resnet32":
        return ResNet32(num_classes)
    return WideResNet(args.layers, num_classes, widen_factor=args.widen_factor, dropRate=args.droprate)
