"""The datasets a run can train on: their names, class counts and per-channel normalisation."""

DATASETS = ("cifar10", "cifar100", "fashionmnist", "clothing1m", "folder")
# "folder": a user's own images (folder.py); its classes are those its training set names.
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "fashionmnist": 10, "clothing1m": 14}
# Held whole on the device at 32 x 32 (device_loader.py), or streamed from image files (stream_loader.py).
STREAMED = ("clothing1m", "folder")
# The classes' names by index, as samples.csv and the suspects' contact sheet show them (others: the index).
CLASS_NAMES = {
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    "fashionmnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    "clothing1m": (
        "T-Shirt",
        "Shirt",
        "Knitwear",
        "Chiffon",
        "Sweater",
        "Hoodie",
        "Windbreaker",
        "Jacket",
        "Down Coat",
        "Suit",
        "Shawl",
        "Dress",
        "Vest",
        "Underwear",
    ),
}

# Per-channel mean and std of the training images in [0, 1]: CIFAR's from the original scripts;
# Fashion-MNIST's measured on its 60,000 training images zero-padded to 32 x 32.
MEAN_STD = {
    "cifar10": ((125.3 / 255, 123.0 / 255, 113.9 / 255), (63.0 / 255, 62.1 / 255, 66.7 / 255)),
    "cifar100": ((125.3 / 255, 123.0 / 255, 113.9 / 255), (63.0 / 255, 62.1 / 255, 66.7 / 255)),
    "fashionmnist": ((0.2190,) * 3, (0.3318,) * 3),
    "clothing1m": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # ImageNet's, as the pretrained ResNet-50 expects
}
IMAGENET_MEAN_STD = MEAN_STD["clothing1m"]  # a folder's with --pretrained; otherwise measured on its images
