"""Meta-Weight-Net in your own training loop: any nn.Module, your own DataLoaders for the noisy training data and
the small clean meta set, the meta-weight-net and both optimisers, as MW-Net.py sets them up.

    pip install . && python examples/own_loop.py   # 5 iterations of a torchvision ResNet-18 on random data
    PYTHONPATH=. python examples/own_loop.py       # the same from the checkout, without installing
"""

import itertools

import torch
import torchvision
from torch.utils.data import DataLoader, TensorDataset

from mwnet import VNet, mwnet_step


def main(iterations=5, seed=0):
    torch.manual_seed(seed)
    # Your data: a training set with noisy labels and a small meta set with clean ones (random tensors here).
    train = TensorDataset(torch.randn(256, 3, 32, 32), torch.randint(0, 10, (256,)))
    meta = TensorDataset(torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,)))
    train_batches = itertools.cycle(DataLoader(train, batch_size=32, shuffle=True))
    meta_batches = itertools.cycle(DataLoader(meta, batch_size=32, shuffle=True))

    model = torchvision.models.resnet18(num_classes=10)  # any nn.Module that maps images to logits
    vnet = VNet(1, 100, 1)  # the meta-weight-net: a sample's loss -> its weight in (0, 1)
    lr = 0.1  # the classifier's lr, which the virtual step uses too: change both together with a schedule
    optimizer = torch.optim.SGD(model.parameters(), lr, momentum=0.9, weight_decay=5e-4)
    vnet_optimizer = torch.optim.Adam(vnet.parameters(), 1e-3, weight_decay=1e-4)

    model.train()
    for iteration in range(1, iterations + 1):
        x, y = next(train_batches)
        meta_x, meta_y = next(meta_batches)
        # step 1: a virtual SGD step, step 2: the meta-weight-net's update on the meta batch, step 3: the real,
        # reweighted step; out holds each sample's loss and weight, and the two losses (all detached)
        out = mwnet_step(model, vnet, optimizer, vnet_optimizer, x, y, meta_x, meta_y, lr)
        weights = ", ".join(f"{w:.3f}" for w in out["weights"][:4].tolist())
        print(
            f"iteration {iteration}: loss {out['loss']:.4f}, meta loss {out['meta_loss']:.4f}, weights {weights}, ..."
        )
    return model, vnet, out


if __name__ == "__main__":
    main()
