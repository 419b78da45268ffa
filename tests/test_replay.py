"""The forward-mode pass from the first forward's values (mwnet/method/replay.py) against torch's own forward-mode
derivative (torch.func.jvp), on every model of the package, and the dual-tensor path wherever the replay cannot
follow."""

import contextlib
import copy
import gc
import weakref

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from mwnet.method.meta_step import _jvp_losses, _recorded_forward, batch_stats_only
from mwnet.models.imagenet import resnet50
from mwnet.models.resnet import ResNet32, ResNet34
from mwnet.models.small import SmallCNN
from mwnet.models.wideresnet import WideResNet

MODELS = {
    "smallcnn": lambda: SmallCNN(10),
    "resnet32": lambda: ResNet32(10, num_blocks=(2, 2, 2)),  # option-A shortcuts: slicing, padding, sums
    "resnet34": lambda: ResNet34(10, num_blocks=(1, 1, 1, 1)),  # projection shortcuts, adaptive pooling
    "wrn": lambda: WideResNet(10, 10, widen_factor=2),  # in-place ReLU on BatchNorm's output
    "resnet50": lambda: resnet50(10),  # torchvision's: max-pool, in-place sums, torch.flatten
}


def setting(arch, channels_last, seed=0):
    torch.manual_seed(seed)
    model = MODELS[arch]().double()
    for m in model.modules():  # running statistics unlike a fresh layer's, so that a stray update shows
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 3, 32, 32, dtype=torch.float64, generator=g)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (6,), generator=g)
    direction = {k: torch.randn(p.shape, dtype=p.dtype, generator=g) for k, p in model.named_parameters()}
    return model, x, y, direction


def reference(model, x, y, direction):
    """torch's forward-mode derivative of the per-sample losses at the model's parameters (batch statistics)."""
    params = {k: p.detach() for k, p in model.named_parameters()}

    def losses(p):
        return F.cross_entropy(functional_call(model, p, (x,)), y, reduction="none")

    with batch_stats_only(model), torch.no_grad():
        return torch.func.jvp(losses, (params,), ({k: direction[k] for k in params},))[1]


def check(model, x, y, direction, replayed, graph=True):
    """The step's JVP through the tape of model(x) (recorded with or without an autograd graph): replayed or, where
    `replayed` is False, by dual tensors, and torch's forward-mode derivative either way. Returns the tape."""
    expected = reference(copy.deepcopy(model), x, y, direction)
    with contextlib.nullcontext() if graph else torch.no_grad():
        logits, tape = _recorded_forward(model, x)
    assert (tape.tangent(model, x, direction, logits) is not None) is replayed
    u = _jvp_losses(model, dict(model.named_parameters()), x, y, direction, tape, logits)
    torch.testing.assert_close(u, expected, rtol=1e-12, atol=1e-12)
    return tape


def own(module_class):
    """A test module of this file in float64, a batch of 32 x 32 images and a direction."""
    torch.manual_seed(0)
    model = module_class().double()
    x, y = torch.randn(5, 3, 32, 32, dtype=torch.float64), torch.randint(0, 10, (5,))
    return model, x, y, {k: torch.randn_like(p) for k, p in model.named_parameters()}


# channels_last (the scripts' layout) on every model, the contiguous layout too on the three smaller ones
LAYOUTS = [(arch, True) for arch in MODELS] + [(arch, False) for arch in ("smallcnn", "resnet32", "wrn")]


@pytest.mark.parametrize(("arch", "channels_last"), LAYOUTS)
def test_the_replayed_tangent_is_torchs_forward_mode_derivative(arch, channels_last):
    """On every model of the package the replay follows the recorded forward to its end (no fallback), gives
    torch's forward-mode derivative to rounding in float64, and leaves the model's buffers as the one recorded
    forward left them (BatchNorm's running statistics and counts updated once)."""
    model, x, y, direction = setting(arch, channels_last)
    before = copy.deepcopy(model.state_dict())
    once = copy.deepcopy(model)
    once(x)  # one training-mode forward: BatchNorm's statistics and counts updated once
    once = once.state_dict()
    assert check(model, x, y, direction, replayed=True).usable
    assert all(torch.equal(v, once[k]) for k, v in model.state_dict().items())
    assert any(not torch.equal(v, before[k]) for k, v in once.items())


class _WithTanh(nn.Module):
    """A function the replay has no rule for."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4 * 30 * 30, 10)

    def forward(self, x):
        return self.fc(torch.tanh(self.bn(self.conv(x))).flatten(1))


def test_a_function_without_a_rule_takes_the_dual_tensor_path():
    tape = check(*own(_WithTanh), replayed=False)
    assert not tape.usable


def test_a_recorded_value_changed_in_place_takes_the_dual_tensor_path():
    """The first convolution's tangent reads the recorded input; changed in place since, the replay declines and the
    tangent is the one at the values the tensors hold now."""
    model, x, y, direction = setting("smallcnn", False)
    logits, tape = _recorded_forward(model, x)
    x.mul_(2)
    assert tape.tangent(model, x, direction, logits) is None
    # the dual-tensor path at the new input (and the recorded forward's BatchNorm counts)
    expected = reference(copy.deepcopy(model), x, y, direction)
    u = _jvp_losses(model, dict(model.named_parameters()), x, y, direction, tape, logits)
    torch.testing.assert_close(u, expected, rtol=1e-12, atol=1e-12)


def test_a_forward_that_differs_from_the_recorded_one_takes_the_dual_tensor_path():
    """A model whose control flow changed between the two runs (here: training mode left) is not matched."""
    model, x, _, direction = setting("resnet32", False)
    logits, tape = _recorded_forward(model, x)
    model.eval()
    assert tape.tangent(model, x, direction, logits) is None


def test_no_tape_under_autocast():
    """Under autocast (bf16 on the CPU) the forward is not recorded: its casts are left to the dual-tensor path."""
    model, x, _, _ = setting("smallcnn", False)
    model, x = model.float(), x.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, tape = _recorded_forward(model, x)
    assert tape is None
    assert _recorded_forward(model, x)[1] is not None


def test_without_an_autograd_graph_batchnorm_statistics_and_pooling_indices_are_recomputed():
    """A forward recorded without a graph leaves no saved batch statistics or max-pool indices to read: the replay
    computes them from the recorded inputs, with the same derivative (the SmallCNN has both)."""
    tape = check(*setting("smallcnn", True), replayed=True, graph=False)
    assert all(call.saved is None for call in tape.calls)


class _ReluInPlaceUnused(nn.Module):
    """An in-place ReLU whose result is not used: the tensor it changed is."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4 * 30 * 30, 10)

    def forward(self, x):
        out = self.bn(self.conv(x))
        F.relu(out, inplace=True)
        return self.fc(out.flatten(1))


def test_an_in_place_relu_changes_the_tangent_in_place():
    check(*own(_ReluInPlaceUnused), replayed=True)


class _Functional(nn.Module):
    """Functions called with keywords, and sums with a number on either side."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 3, 3, 3))
        self.fc = nn.Linear(4 * 16 * 16, 10)

    def forward(self, x):
        out = F.conv2d(x, weight=self.weight, padding=1, stride=2)
        out = F.relu(1.0 + F.batch_norm(out, None, None, training=True) + 0.5)
        return F.linear(out.flatten(1), weight=self.fc.weight, bias=self.fc.bias)


def test_keyword_arguments_and_sums_with_numbers_are_followed():
    check(*own(_Functional), replayed=True)


class _Hidden(nn.Module):
    """Part of the forward out of a torch function mode's sight (torch._C.DisableTorchFunction): `hidden` says which."""

    def __init__(self, hidden):
        super().__init__()
        self.hidden = hidden
        self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4 * 30 * 30, 10)

    def forward(self, x):
        out = self.conv(x)
        if self.hidden == "middle":
            with torch._C.DisableTorchFunction():
                out = torch.tanh(out)
        if self.hidden == "all":
            with torch._C.DisableTorchFunction():
                return F.linear(out.flatten(1), self.fc.weight, self.fc.bias)
        return self.fc(out.flatten(1))


@pytest.mark.parametrize("hidden", ["middle", "all"])
def test_computation_out_of_the_modes_sight_takes_the_dual_tensor_path(hidden):
    """Tensors the replay did not make, reaching a recorded call or returned by the model, are not taken for
    tangents: the replay declines and the dual tensors (which see everything) give torch's derivative."""
    check(*own(lambda: _Hidden(hidden)), replayed=False)


def test_the_tape_keeps_alive_nothing_that_autograd_frees():
    """ResNet-32's BatchNorm outputs: read by no backward formula (the ReLU after each keeps its own result) nor by
    any rule, so freed after the forward, the tape holding it or not; the step's peak memory stays where it was."""
    model, x, y, direction = setting("resnet32", True)
    outputs = []
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.register_forward_hook(lambda module, args, out: outputs.append(weakref.ref(out)))
    logits, tape = _recorded_forward(model, x)
    gc.collect()
    assert len(outputs) == 13 and all(ref() is None for ref in outputs)
    assert tape.tangent(model, x, direction, logits) is not None
