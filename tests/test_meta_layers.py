"""MetaModule's legacy API on real Parameters, and the models' structure."""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from mwnet.models.meta_layers import MetaBatchNorm2d, MetaConv2d, MetaConvTranspose2d, MetaLinear, MetaModule, VNet
from mwnet.models.resnet import ResNet32
from mwnet.models.resnet import VNet as ResNetVNet
from mwnet.models.wideresnet import VNet as WRNVNet
from mwnet.models.wideresnet import WideResNet


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_resnet32_parameter_count_by_hand():
    conv = lambda cin, cout: cin * cout * 9  # noqa: E731  3x3 kernels, no bias
    bn = lambda c: 2 * c  # noqa: E731
    block = lambda cin, cout: conv(cin, cout) + bn(cout) + conv(cout, cout) + bn(cout)  # noqa: E731
    stem = conv(3, 16) + bn(16)
    stages = 5 * block(16, 16) + block(16, 32) + 4 * block(32, 32) + block(32, 64) + 4 * block(64, 64)
    assert stem + stages + 64 * 10 + 10 == 464154  # the option-A shortcuts carry no parameters
    assert count(ResNet32(10)) == 464154
    assert count(ResNet32(100)) == 464154 + 64 * 90 + 90


@pytest.mark.parametrize("depth,widen,classes", [(28, 10, 10), (28, 10, 100), (16, 2, 10)])
def test_wideresnet_parameter_count_by_hand(depth, widen, classes):
    n = (depth - 4) // 6
    widths = [16, 16 * widen, 32 * widen, 64 * widen]
    total = 3 * 16 * 9
    for stage in range(3):
        for i in range(n):
            cin, cout = (widths[stage] if i == 0 else widths[stage + 1]), widths[stage + 1]
            total += 2 * cin + cin * cout * 9 + 2 * cout + cout * cout * 9 + (cin * cout if cin != cout else 0)
    total += 2 * widths[3] + widths[3] * classes + classes
    assert count(WideResNet(depth, classes, widen_factor=widen)) == total
    if (depth, widen, classes) == (28, 10, 10):
        assert total == 36479194


def test_vnet_and_reexports():
    assert ResNetVNet is VNet and WRNVNet is VNet
    vnet = VNet(1, 100, 1)
    assert count(vnet) == 100 + 100 + 100 + 1
    out = vnet(torch.linspace(0, 10, 7).unsqueeze(1))
    assert out.shape == (7, 1) and torch.all((out > 0) & (out < 1))


def test_layers_are_torch_layers_with_standard_keys():
    pairs = [
        (MetaLinear(4, 3), nn.Linear(4, 3)),
        (MetaConv2d(3, 5, 3, padding=1), nn.Conv2d(3, 5, 3, padding=1)),
        (MetaConvTranspose2d(5, 3, 2, stride=2), nn.ConvTranspose2d(5, 3, 2, stride=2)),
        (MetaBatchNorm2d(5), nn.BatchNorm2d(5)),
    ]
    for meta, plain in pairs:
        assert isinstance(meta, type(plain)) and isinstance(meta, MetaModule)
        assert list(meta.state_dict()) == list(plain.state_dict())
        assert all(isinstance(p, nn.Parameter) for p in meta.parameters())
    model = ResNet32(10)
    assert "layer2.0.bn1.running_mean" in model.state_dict() and "linear.weight" in model.state_dict()
    assert [n for n, _ in model.named_params()] == [n for n, _ in model.named_parameters()]
    assert all(a is b for a, b in zip(model.params(), model.parameters(), strict=True))


def tiny_net():
    torch.manual_seed(0)
    return nn.Sequential(
        MetaConv2d(3, 4, 3, padding=1), MetaBatchNorm2d(4), nn.ReLU(), nn.Flatten(), MetaLinear(4 * 8 * 8, 3)
    )


class Wrapped(MetaModule):
    def __init__(self):
        super().__init__()
        self.net = tiny_net()
        self.up = MetaConvTranspose2d(3, 3, 1)

    def forward(self, x):
        return self.net(self.up(x))


def test_update_params_matches_functional_virtual_step():
    model = Wrapped().double()
    x, y = torch.randn(5, 3, 8, 8, dtype=torch.double), torch.tensor([0, 1, 2, 0, 1])
    params = dict(model.named_parameters())
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(params.values()), create_graph=True)
    virtual = {k: p - 0.1 * g for (k, p), g in zip(params.items(), grads, strict=True)}
    pseudo = copy.deepcopy(model)
    pseudo_grads = torch.autograd.grad(F.cross_entropy(pseudo(x), y), list(pseudo.params()), create_graph=True)
    pseudo.update_params(lr_inner=0.1, source_params=pseudo_grads)
    named = dict(pseudo.named_params())
    assert list(named) == list(virtual)
    for k in virtual:
        torch.testing.assert_close(named[k], virtual[k], rtol=0, atol=0)
        assert named[k].grad_fn is not None  # a non-leaf tensor: second-order paths stay open
    torch.testing.assert_close(pseudo(x), functional_call(model, virtual, (x,)), rtol=0, atol=1e-14)


def test_update_params_from_grad_first_order_and_detach():
    model = Wrapped().double()
    x, y = torch.randn(5, 3, 8, 8, dtype=torch.double), torch.tensor([0, 1, 2, 0, 1])
    F.cross_entropy(model(x), y).backward()
    before = {k: (p.detach().clone(), p.grad.clone()) for k, p in model.named_parameters()}
    model.update_params(0.5, first_order=True)
    for k, t in model.named_params():
        torch.testing.assert_close(t, before[k][0] - 0.5 * before[k][1], rtol=0, atol=0)
    model.update_params(0.5, detach=True)
    assert all(not t.requires_grad for t in model.params())
    replacement = torch.zeros_like(dict(model.named_params())["net.4.bias"])
    model.set_param("net.4.bias", replacement)
    assert model.net[4].bias is replacement
    model.set_param(model, "net.1.weight", torch.ones(4, dtype=torch.double))
    assert torch.equal(model.net[1].weight, torch.ones(4, dtype=torch.double))


def test_detach_params_cuts_the_graph():
    model = Wrapped()
    x = torch.randn(2, 3, 8, 8)
    grads = torch.autograd.grad(model(x).sum(), list(model.params()), create_graph=True)
    model.update_params(0.1, source_params=grads)
    assert all(t.grad_fn is not None for t in model.params())
    model.detach_params()
    assert all(t.grad_fn is None and not t.requires_grad for t in model.params())


def test_optimiser_and_channels_last_work_as_on_any_module():
    model = ResNet32(10)
    x = torch.randn(4, 3, 32, 32)
    reference = model(x)
    fast = copy.deepcopy(model).to(memory_format=torch.channels_last)
    torch.testing.assert_close(fast(x.to(memory_format=torch.channels_last)), reference, rtol=1e-4, atol=1e-4)
    opt = torch.optim.SGD(model.params(), lr=0.1, momentum=0.9)
    before = model.linear.weight.detach().clone()
    F.cross_entropy(model(x), torch.tensor([0, 1, 2, 3])).backward()
    opt.step()
    assert not torch.equal(before, model.linear.weight)


def test_wideresnet_rejects_bad_depth():
    with pytest.raises(ValueError, match="6n"):
        WideResNet(27, 10)
