"""The classifiers and the meta-weight-net, built from Meta layers (meta_layers.py) as the original's were.
A new model: its module here, its name in ARCHS, model_label and build_model.

This module imports no torch until a model is built, so that the flags (engine/options.py) and the readers
of run files (runs/run_files.py, the tools) can name models where torch is not installed.
"""

ARCHS = ("resnet32", "wrn", "resnet34", "resnet50", "smallcnn")


def model_label(config):
    """The classifier of a run's flags, in words: ResNet-32, WRN-28-10, ResNet-34."""
    arch = config.get("arch")
    if arch == "wrn":
        return f"WRN-{config.get('layers')}-{config.get('widen_factor')}"
    names = {"resnet32": "ResNet-32", "resnet34": "ResNet-34", "resnet50": "ResNet-50", "smallcnn": "SmallCNN"}
    return names.get(arch, str(arch))


def build_model(args, num_classes, image_size=32):
    """The classifier a run's flags name (args.arch, and the WideResNet's shape flags), for images of
    image_size x image_size (the small classifier's head depends on it)."""
    if args.arch == "resnet32":
        from mwnet.models.resnet import ResNet32

        return ResNet32(num_classes)
    if args.arch == "resnet34":
        from mwnet.models.resnet import ResNet34

        return ResNet34(num_classes)
    if args.arch == "smallcnn":  # the laptop protocol's (--protocol laptop)
        from mwnet.models.small import SmallCNN

        return SmallCNN(num_classes, in_size=image_size)
    if args.arch == "resnet50":  # torchvision's; its ImageNet weights are loaded at a fresh start (--pretrained)
        from mwnet.models.imagenet import resnet50

        return resnet50(num_classes)
    from mwnet.models.wideresnet import WideResNet

    return WideResNet(args.layers, num_classes, widen_factor=args.widen_factor, dropRate=args.droprate)
