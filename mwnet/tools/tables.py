"""The tables that summarize.py prints: each table script's settings and rows, where a run's folder puts it, and the
paper's figures beside them (its tables in ../shared/reference: Shu et al., NeurIPS 2019)."""

from mwnet.data.cifar_n import HUMAN_LABELS

ROWS = [
    ("mwnet", "MW-Net"),
    ("mwnet_selected", "MW-Net, meta set selected (no clean label)"),
    ("l2rw", "L2RW"),
    ("erm", "Plain, same schedule"),
    ("erm_long", "Plain, BaseModel schedule"),
    ("focal", "Focal loss"),
    ("cb", "Class-balanced loss"),
    ("finetune", "Fine-tuning on the meta set"),
    ("la", "Logit adjustment"),
]
WEIGHT_ROWS = ("mwnet", "mwnet_selected", "l2rw")


def _paper(rows):
    """{row: [(mean, std or None), ...]} from 'mean±std' strings."""
    out = {}
    for row, cells in rows.items():
        out[row] = [tuple(float(x) for x in c.split("±")) if "±" in c else (float(c), None) for c in cells.split()]
    return out


def _noise_cell(name, *types):
    """'flip2_p0.4' -> ('flip2', '0.4') for the table's noise types; None for another folder."""
    kind, _, level = name.partition("_p")
    return (kind, level) if kind in types and level else None


def _imbalance_cell(c):
    """A long-tailed run's folder: imb<factor>, with its label noise after it where it has any."""
    if not c.get("imb_factor"):
        return None
    noise = f"_{c['corruption_type']}_p{c['corruption_prob']!r}" if c.get("corruption_prob") else ""
    return f"imb{c['imb_factor']:g}{noise}"


# The paper's tables (README, "What to expect"). Its BaseModel used L2RW's longer schedule,
# so it stands beside our erm_long row; the authors put plain training with MW-Net's own 20k
# schedule at about 88.5 for CIFAR-10 with 40 % uniform noise (issue 1 of their repository).
TABLES = {
    "uniform_wrn": {
        "title": "Uniform noise, WRN-28-10",
        "levels": ["0.0", "0.4", "0.6"],
        "cell": lambda name: ("", name[len("unif_p") :]) if name.startswith("unif_p") else None,
        "expected": lambda c: f"{c['corruption_type']}_p{c['corruption_prob']!r}",
        "paper": {
            "cifar10": _paper(
                {
                    "erm_long": "95.60±0.22 68.07±1.23 53.12±3.03",
                    "l2rw": "92.38±0.10 86.92±0.19 82.24±0.36",
                    "mwnet": "94.52±0.25 89.27±0.28 84.07±0.33",
                }
            ),
            "cifar100": _paper(
                {
                    "erm_long": "79.95±1.26 51.11±0.42 30.92±0.33",
                    "l2rw": "72.99±0.58 60.79±0.91 48.15±0.34",
                    "mwnet": "78.76±0.24 67.73±0.26 58.75±0.11",
                }
            ),
        },
        "remarks": {("cifar10", "erm", "0.4"): (88.5, None)},
    },
    "flip_resnet32": {
        "title": "Flip noise, ResNet-32",
        "levels": ["0.0", "0.2", "0.4"],
        "cell": lambda name: _noise_cell(name, "flip", "flip2"),
        "expected": lambda c: f"{c['corruption_type']}_p{c['corruption_prob']!r}",
        "paper": {
            "cifar10": _paper(
                {
                    "erm_long": "92.89±0.32 76.83±2.30 70.77±2.31",
                    "l2rw": "89.25±0.37 87.86±0.36 85.66±0.51",
                    "mwnet": "92.04±0.15 90.33±0.61 87.54±0.23",
                }
            ),
            "cifar100": _paper(
                {
                    "erm_long": "70.50±0.12 50.86±0.27 43.01±1.16",
                    "l2rw": "64.11±1.09 57.47±1.16 50.98±1.55",
                    "mwnet": "70.11±0.33 64.22±0.28 58.64±0.47",
                }
            ),
        },
    },
    "longtail_resnet32": {
        "title": "Long-tailed, ResNet-32 (imbalance factor)",
        "levels": ["200", "100", "50", "20", "10", "1"],
        "cell": lambda name: ("", name[3:]) if name.startswith("imb") else None,
        "expected": lambda c: f"imb{c['imb_factor']:g}" if c.get("imb_factor") else None,
        "paper": {
            "cifar10": _paper(
                {
                    "erm_long": "65.68 70.36 74.81 82.23 86.39 92.89",
                    "l2rw": "66.51 74.16 78.93 82.12 85.19 89.25",
                    "mwnet": "68.91 75.21 80.06 84.94 87.84 92.66",
                }
            ),
            "cifar100": _paper(
                {
                    "erm_long": "34.84 38.32 43.85 51.14 55.71 70.50",
                    "l2rw": "33.38 40.23 44.44 51.64 53.73 64.11",
                    "mwnet": "37.91 42.09 46.74 54.37 58.46 70.37",
                }
            ),
        },
    },
    "cifar_n_resnet34": {
        "title": "CIFAR-N (human label noise), ResNet-34 (no paper figures)",
        "levels": {"cifar10": ["aggre", "random1", "worse"], "cifar100": ["noisy"]},
        "rows": ("mwnet", "mwnet_selected", "l2rw", "erm"),
        "cell": lambda name: ("", name) if name in HUMAN_LABELS else None,
        "expected": lambda c: c.get("human_labels") if c.get("corruption_type") == "human" else None,
        # The authors' cross-entropy figures go here, with their source, once read from their paper or repository
        # (README, "CIFAR-N"); none is printed that was not checked.
        "paper": {},
    },
    "clothing1m_resnet50": {
        "title": "Clothing1M, ResNet-50 (the reported figure: the last epoch's accuracy)",
        "levels": ["noisy"],
        "rows": ("mwnet", "l2rw", "erm"),
        "reported": "last",  # the paper's appendix: test accuracy at the last epoch
        "cell": lambda name: ("", name) if name == "noisy" else None,
        "expected": lambda c: "noisy" if c.get("dataset") == "clothing1m" else None,
        # the paper's Clothing1M table: MW-Net and its cross-entropy row
        "paper": {"clothing1m": _paper({"mwnet": "73.72", "erm": "68.94"})},
    },
    "fashionmnist_resnet32": {
        "title": "Fashion-MNIST, ResNet-32 (no paper figures)",
        "levels": ["unif_p0.4", "unif_p0.6", "flip2_p0.2", "flip2_p0.4"],
        "cell": lambda name: ("", name) if _noise_cell(name, "unif", "flip", "flip2") else None,
        "expected": lambda c: f"{c['corruption_type']}_p{c['corruption_prob']!r}",
        "paper": {},
    },
    "fashionmnist_laptop_lt": {
        "title": "Fashion-MNIST, the long-tailed laptop protocol: SmallCNN, 500 images in the largest class, 40 epochs (imbalance factor)",
        "levels": ["imb200", "imb100", "imb50", "imb20", "imb10", "imb1"],
        "rows": ("erm", "focal", "cb", "finetune", "l2rw", "mwnet", "la"),
        "cell": lambda name: ("", name) if name.startswith("imb") else None,
        "expected": _imbalance_cell,
        "paper": {},
        "groups": (("head", 0, 3), ("middle", 3, 7), ("tail", 7, 10)),  # classes by size: 0 is the largest
        "reference": (
            "The paper's Table 1 on long-tailed CIFAR-10 (ResNet-32; another dataset and model, for reference only)",
            ["200", "100", "50", "20", "10", "1"],
            {
                "Plain training (BaseModel)": "65.68 70.36 74.81 82.23 86.39 92.89",
                "Focal loss": "65.29 70.38 76.71 82.76 86.66 93.03",
                "Class-balanced loss": "68.89 74.57 79.27 84.36 87.49 92.89",
                "Fine-tuning": "66.08 71.33 77.42 83.37 86.42 93.23",
                "L2RW": "66.51 74.16 78.93 82.12 85.19 89.25",
                "MW-Net": "68.91 75.21 80.06 84.94 87.84 92.66",
            },
        ),
    },
    "fashionmnist_laptop": {
        "title": "Fashion-MNIST, the laptop protocol: SmallCNN, 5,000 training images, 40 epochs (no paper figures)",
        "levels": ["unif_p0.4", "unif_p0.6", "flip2_p0.2", "flip2_p0.4", "flip_p0.4"],
        "rows": ("mwnet", "mwnet_selected", "l2rw", "erm"),
        "cell": lambda name: ("", name) if _noise_cell(name, "unif", "flip", "flip2") else None,
        "expected": lambda c: f"{c['corruption_type']}_p{c['corruption_prob']!r}",
        "paper": {},
    },
}
