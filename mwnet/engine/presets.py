"""The presets of the two scripts and of --protocol: the flags' defaults that a script or a protocol sets.

Each script is a preset: MW-Net.py (ResNet-32, epochs) and train_WRN-28-10_Meta_PGC.py (WRN-28-10,
iterations). With no flags each does what its original does (docs/usage.md, "The two scripts"). A dataset's
own defaults are its spec's (data/catalog.py).
"""

PRESETS = {
    "MW-Net.py": {
        "arch": "resnet32",
        "unit": "epoch",  # the schedule, --milestones and --eval_every count epochs
        "sampling": "epoch",  # shuffled passes over the training set (and over the meta set)
        "epochs": 120,
        "iters": 60000,  # declared by the original, unused: it counts epochs
        "milestones": [80, 100],
        "nesterov": False,  # the original declared True but never passed it to its optimiser
        "vnet_optimizer": "adam",
        "vnet_lr": 1e-3,
        "vnet_wd": 1e-4,
        "normalize_weights": False,
        "eval_every": 1,
        "warmup": 10,  # --meta_source selected: epochs of plain training before the meta set is selected
    },
    "train_WRN-28-10_Meta_PGC.py": {
        "arch": "wrn",
        "unit": "iter",
        "sampling": "random",  # each iteration a fresh random batch (next(iter(loader)))
        "epochs": 60,  # declared by the original, unused: it counts iterations
        "iters": 20000,
        "milestones": [18000, 19000],
        "nesterov": True,
        "vnet_optimizer": "sgd",
        "vnet_lr": 1e-3,
        "vnet_wd": 5e-4,  # the original's meta-net SGD took --wd, 5e-4
        "normalize_weights": True,
        "eval_every": 100,
        "warmup": 4000,  # iterations: about 10 epochs of batch 100 on the 49,000 training images
    },
}
DERIVED = ("script", "unit", "sampling")  # set from the preset, not flags
LAPTOP_EPOCHS, LAPTOP_MILESTONES = 40, [24, 32]
LT_MAX, LT_EPOCHS, LT_MILESTONES = (
    500,
    40,
    [32, 36],
)  # --protocol laptop_lt: images of the largest class; x0.1 at 80 and 90 %
# --protocol laptop: a run a CPU finishes (docs/results-fashion-mnist.md, "The laptop protocol"): the small
# classifier on a fixed class-balanced subset of 5,000 Fashion-MNIST training images, the clean meta set (2 %
# of them, the paper's proportion) from the images outside it, lr 0.02 (a network of its kind did not train at 0.1), x0.1 at
# 60 % and 80 % of the run, no augmentation; for the flags not given. Chosen by plain training's curve under 60 %
# uniform noise: it peaks early, then memorises the noise.
PROTOCOLS = {
    "laptop": {
        "dataset": "fashionmnist",
        "arch": "smallcnn",
        "train_subset": 5000,
        "num_meta": 100,
        "lr": 0.02,
        "augment": False,  # with crop and flip, plain training had not begun to memorise after 40 epochs
        "epoch": {"epochs": LAPTOP_EPOCHS, "milestones": LAPTOP_MILESTONES, "eval_every": 1},
        "iter": {
            "iters": LAPTOP_EPOCHS * 50,
            "milestones": [m * 50 for m in LAPTOP_MILESTONES],
            "eval_every": 50,
            "warmup": 500,
        },
    },
    # --protocol laptop_lt: the class-imbalance half on the laptop protocol (docs/results-fashion-mnist.md, "The
    # class-imbalance half"). The fixed class-balanced subset of LT_MAX images a class is cut to a long tail by
    # --imb_factor as the class-imbalance code cuts CIFAR (class c keeps int(LT_MAX * r^(c/(K-1)))), 10 clean meta
    # images a class from outside it, and that code's iteration: Nesterov SGD for both networks, the meta-weight-net
    # at lr 1e-5, weights normalised by their sum, V fed the undetached loss, the real step's lr an epoch ahead, a
    # fresh meta batch each iteration, no label noise. Its length and size were chosen by plain training alone.
    "laptop_lt": {
        "dataset": "fashionmnist",
        "arch": "smallcnn",
        "train_subset": LT_MAX * 10,
        "num_meta": 100,
        "lr": 0.02,
        "augment": False,
        "corruption_prob": 0.0,
        "nesterov": True,
        "vnet_optimizer": "sgd",
        "vnet_lr": 1e-5,
        "vnet_wd": 5e-4,
        "normalize_weights": True,
        "detach_vnet_input": False,
        "real_lr_ahead": 1,
        "meta_sampling": "random",
        "epoch": {"epochs": LT_EPOCHS, "milestones": LT_MILESTONES, "eval_every": 1},
    },
}
# --precision: (TF32 allowed for float32 convolutions and matmuls on CUDA, bf16 autocast)
PRECISIONS = {"fp32": (False, False), "tf32": (True, False), "bf16": (False, True)}


def apply_preset(args, preset, unit, given):
    """A preset's values for the flags not given; its "epoch" or "iter" part by the script's unit."""
    values = {k: v for k, v in preset.items() if k not in ("epoch", "iter")}
    values.update(preset[unit])
    for k, v in values.items():
        if k not in given:
            setattr(args, k, v)
