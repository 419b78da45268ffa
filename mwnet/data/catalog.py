"""The datasets a run can train on: their names, class counts and per-channel normalisation."""

DATASETS = ("cifar10", "cifar100", "fashionmnist")
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "fashionmnist": 10}

# Per-channel mean and std of the training images in [0, 1]: CIFAR's from the original scripts;
# Fashion-MNIST's measured on its 60,000 training images zero-padded to 32 x 32.
MEAN_STD = {
    "cifar10": ((125.3 / 255, 123.0 / 255, 113.9 / 255), (63.0 / 255, 62.1 / 255, 66.7 / 255)),
    "cifar100": ((125.3 / 255, 123.0 / 255, 113.9 / 255), (63.0 / 255, 62.1 / 255, 66.7 / 255)),
    "fashionmnist": ((0.2190,) * 3, (0.3318,) * 3),
}
