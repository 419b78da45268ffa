"""The meta step: jvp = double_backward = finite differences; the real model sees one weighted step."""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mwnet.method.meta_step import erm_step, l2rw_step, l2rw_weights_from_grad, mwnet_step, weighted_loss
from mwnet.models.meta_layers import MetaBatchNorm2d, MetaConv2d, MetaLinear, VNet
from mwnet.models.resnet import ResNet32
from mwnet.models.wideresnet import WideResNet

LR = 0.1


def setting(arch, seed=0):
    """A float64 model, vnet and batches; ResNet-32 on 16 x 16 images keeps the test fast."""
    torch.manual_seed(seed)
    model = (ResNet32(10) if arch == "resnet" else WideResNet(10, 10, widen_factor=2)).double()
    # Non-trivial BatchNorm statistics, so that a stray update of them would show.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    size = 16 if arch == "resnet" else 32
    g = torch.Generator().manual_seed(seed)
    batch = [torch.randn(8, 3, size, size, dtype=torch.double, generator=g), torch.randint(0, 10, (8,), generator=g)]
    meta = [torch.randn(6, 3, size, size, dtype=torch.double, generator=g), torch.randint(0, 10, (6,), generator=g)]
    return model, VNet(1, 100, 1).double(), batch, meta


def optimisers(model, vnet):
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, weight_decay=5e-4)
    return opt, torch.optim.Adam(vnet.parameters(), 1e-3, weight_decay=1e-4)


def run(model, vnet, batch, meta, normalize, meta_grad):
    model, vnet = copy.deepcopy(model), copy.deepcopy(vnet)
    opt, vopt = optimisers(model, vnet)
    out = mwnet_step(model, vnet, opt, vopt, *batch, *meta, LR, normalize=normalize, meta_grad=meta_grad)
    return model, vnet, out


def vnet_grad(vnet):
    return torch.cat([p.grad.flatten() for p in vnet.parameters()])


def legacy_meta_loss(model, vnet, batch, meta, normalize):
    """The original's way, independently: a throwaway copy, update_params, the meta loss at w'."""
    pseudo = copy.deepcopy(model)
    losses = F.cross_entropy(pseudo(batch[0]), batch[1], reduction="none")
    v = vnet(losses.detach().view(-1, 1)).view(-1)
    loss = (losses * v).sum() / (v.sum() if normalize else len(v))
    grads = torch.autograd.grad(loss, list(pseudo.params()), create_graph=True)
    pseudo.update_params(lr_inner=LR, source_params=grads)
    return F.cross_entropy(pseudo(meta[0]), meta[1])


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("arch", ["resnet", "wrn"])
def test_jvp_equals_double_backward(arch, normalize):
    model, vnet, batch, meta = setting(arch)
    _, v_jvp, out_jvp = run(model, vnet, batch, meta, normalize, "jvp")
    _, v_db, out_db = run(model, vnet, batch, meta, normalize, "double_backward")
    a, b = vnet_grad(v_jvp), vnet_grad(v_db)
    assert b.norm() > 0  # the meta-weight-net learns something
    assert ((a - b).norm() / b.norm()).item() < 1e-9
    torch.testing.assert_close(out_jvp["meta_loss"], out_db["meta_loss"], rtol=1e-12, atol=0)
    torch.testing.assert_close(out_jvp["weights"], out_db["weights"], rtol=1e-12, atol=0)


def central_difference(model, vnet, batch, meta, normalize, name, index, h):
    values = []
    for sign in (1, -1):
        probe = copy.deepcopy(vnet)
        with torch.no_grad():
            dict(probe.named_parameters())[name][index] += sign * h
        values.append(legacy_meta_loss(model, probe, batch, meta, normalize).item())
    return (values[0] - values[1]) / (2 * h), max(abs(v) for v in values)


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("arch", ["resnet", "wrn"])
def test_meta_gradient_matches_finite_differences(arch, normalize):
    """The JVP meta-gradient against central differences of the original's meta loss. A central difference at h
    errs by its truncation, c h^2, estimated by how much it moves from h to 2h, plus rounding: each meta loss
    carries float64 rounding of at most about its depth in ulps (bounded by 100 eps |f| here), divided by h.
    h = 1e-6 keeps V's ReLU kinks, which larger steps can cross, out of reach."""
    model, vnet, batch, meta = setting(arch, seed=1)
    legacy = legacy_meta_loss(model, vnet, batch, meta, normalize)
    _, v_jvp, out = run(model, vnet, batch, meta, normalize, "jvp")
    torch.testing.assert_close(out["meta_loss"], legacy.detach(), rtol=1e-12, atol=0)
    analytic = dict(zip([n for n, _ in vnet.named_parameters()], [p.grad for p in v_jvp.parameters()], strict=True))
    h, eps = 1e-6, torch.finfo(torch.float64).eps
    checked = 0
    for name, index in [
        ("linear2.bias", (0,)),
        ("linear2.weight", (0, 3)),
        ("linear1.weight", (7, 0)),
        ("linear1.bias", (42,)),
    ]:
        numeric, f = central_difference(model, vnet, batch, meta, normalize, name, index, h)
        coarse, _ = central_difference(model, vnet, batch, meta, normalize, name, index, 2 * h)
        exact = analytic[name][index].item()
        bound = abs(coarse - numeric) + 100 * eps * f / h
        assert abs(numeric - exact) <= bound, (name, numeric, exact, bound)
        checked += exact != 0 and bound < 0.01 * abs(exact)  # a check that tells a wrong gradient apart
    assert checked >= 2


@pytest.mark.parametrize("meta_grad", ["jvp", "double_backward"])
@pytest.mark.parametrize("normalize", [False, True])
def test_real_step_is_one_weighted_sgd_step(meta_grad, normalize):
    """Parameters and BatchNorm statistics after mwnet_step equal a plain weighted SGD step with the
    updated vnet's weights: steps 1-2 leave the real model untouched."""
    model, vnet, batch, meta = setting("resnet", seed=2)
    stepped, vnet_stepped = copy.deepcopy(model), copy.deepcopy(vnet)
    opt, vopt = optimisers(stepped, vnet_stepped)
    reference = copy.deepcopy(model)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=LR, momentum=0.9, weight_decay=5e-4)
    for _ in range(2):  # two iterations, so that momentum takes part
        out = mwnet_step(stepped, vnet_stepped, opt, vopt, *batch, *meta, LR, normalize=normalize, meta_grad=meta_grad)
        losses = F.cross_entropy(reference(batch[0]), batch[1], reduction="none")
        with torch.no_grad():
            w = vnet_stepped(losses.detach().view(-1, 1)).view(-1)
        ref_opt.zero_grad()
        ((losses * w).sum() / (w.sum() if normalize else len(w))).backward()
        ref_opt.step()
        torch.testing.assert_close(out["weights"], w, rtol=0, atol=1e-15)
        torch.testing.assert_close(out["losses"], losses.detach(), rtol=0, atol=1e-13)
    ref_state = reference.state_dict()
    for key, value in stepped.state_dict().items():
        torch.testing.assert_close(value, ref_state[key], rtol=0, atol=1e-12, msg=key)
    assert stepped.state_dict()["bn1.num_batches_tracked"].item() == 2  # one BatchNorm update per iteration


def test_weighted_loss_zero_sum_falls_back_to_unnormalised():
    losses = torch.tensor([1.0, 2.0, 3.0], dtype=torch.double)
    w = torch.zeros(3, dtype=torch.double, requires_grad=True)
    loss = weighted_loss(losses, w, normalize=True)
    (grad,) = torch.autograd.grad(loss, w)
    assert loss.item() == 0 and torch.equal(grad, losses)  # d/dv_i of sum v_i l_i
    v = torch.tensor([1.0, 1.0, 2.0], dtype=torch.double)
    assert weighted_loss(losses, v, normalize=True).item() == pytest.approx(9 / 4)
    assert weighted_loss(losses, v).item() == pytest.approx(9 / 3)


def tiny_setting():
    torch.manual_seed(3)
    model = nn.Sequential(
        MetaConv2d(3, 4, 3, padding=1),
        MetaBatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        MetaLinear(16, 3),
    ).double()
    g = torch.Generator().manual_seed(3)
    batch = [torch.randn(10, 3, 6, 6, dtype=torch.double, generator=g), torch.randint(0, 3, (10,), generator=g)]
    meta = [torch.randn(5, 3, 6, 6, dtype=torch.double, generator=g), torch.randint(0, 3, (5,), generator=g)]
    return model, batch, meta


def brute_force_l2rw_weights(model, batch, meta):
    """Per-sample gradients one backward at a time (BatchNorm couples the batch), dotted with the
    meta gradient at w: dL_meta/dε_i = -lr <g, dl_i/dw>."""
    probe = copy.deepcopy(model)
    params = list(probe.parameters())
    losses = F.cross_entropy(probe(batch[0]), batch[1], reduction="none")
    per_sample = torch.stack(
        [
            torch.cat([g.flatten() for g in torch.autograd.grad(losses[i], params, retain_graph=True)])
            for i in range(len(losses))
        ]
    )
    g = torch.cat([t.flatten() for t in torch.autograd.grad(F.cross_entropy(probe(meta[0]), meta[1]), params)])
    grad_eps = -LR * per_sample @ g
    w = grad_eps.neg().clamp(min=0)
    return w / w.sum()


@pytest.mark.parametrize("meta_grad", ["jvp", "double_backward"])
def test_l2rw_weights_equal_brute_force(meta_grad):
    model, batch, meta = tiny_setting()
    expected = brute_force_l2rw_weights(model, batch, meta)
    assert (expected > 0).any() and (expected == 0).any()  # clipping takes part
    stepped = copy.deepcopy(model)
    opt = torch.optim.SGD(stepped.parameters(), lr=LR)
    out = l2rw_step(stepped, opt, *batch, *meta, LR, meta_grad=meta_grad)
    torch.testing.assert_close(out["weights"], expected, rtol=1e-10, atol=1e-14)
    reference = copy.deepcopy(model)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=LR)
    (F.cross_entropy(reference(batch[0]), batch[1], reduction="none") * expected).sum().backward()
    ref_opt.step()
    for key, value in stepped.state_dict().items():
        torch.testing.assert_close(value, reference.state_dict()[key], rtol=0, atol=1e-12, msg=key)


def test_l2rw_all_zero_weights_stay_zero():
    assert torch.equal(l2rw_weights_from_grad(torch.tensor([0.5, 0.0, 2.0])), torch.zeros(3))
    torch.testing.assert_close(l2rw_weights_from_grad(torch.tensor([-1.0, 1.0, -3.0])), torch.tensor([0.25, 0.0, 0.75]))


def test_erm_step_is_plain_training():
    model, batch, _ = tiny_setting()
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    opt_a, opt_b = torch.optim.SGD(a.parameters(), lr=LR), torch.optim.SGD(b.parameters(), lr=LR)
    erm_step(a, opt_a, *batch)
    F.cross_entropy(b(batch[0]), batch[1]).backward()
    opt_b.step()
    for key, value in a.state_dict().items():
        torch.testing.assert_close(value, b.state_dict()[key], rtol=0, atol=1e-14)


def test_bad_meta_grad():
    model, vnet, batch, meta = setting("resnet")
    opt, vopt = optimisers(model, vnet)
    with pytest.raises(ValueError, match="meta_grad"):
        mwnet_step(model, vnet, opt, vopt, *batch, *meta, LR, meta_grad="exact")


def class_imbalance_step(model, vnet, optimizer_a, optimizer_c, x, y, mx, my, meta_lr):
    """The class-imbalance code's iteration, literally (its train(), one batch): a throwaway model with the
    real one's state, V fed the per-sample loss itself (not detached), weights normalised by their sum."""
    meta_model = copy.deepcopy(model)
    cost = F.cross_entropy(meta_model(x), y, reduction="none")
    cost_v = torch.reshape(cost, (len(cost), 1))
    v_lambda = vnet(cost_v)
    norm_c = torch.sum(v_lambda)
    v_lambda_norm = v_lambda / norm_c if norm_c != 0 else v_lambda
    l_f_meta = torch.sum(cost_v * v_lambda_norm)
    grads = torch.autograd.grad(l_f_meta, list(meta_model.params()), create_graph=True)
    meta_model.update_params(lr_inner=meta_lr, source_params=grads)
    l_g_meta = F.cross_entropy(meta_model(mx), my)
    optimizer_c.zero_grad()
    l_g_meta.backward()
    optimizer_c.step()
    cost_w = F.cross_entropy(model(x), y, reduction="none")
    cost_v = torch.reshape(cost_w, (len(cost_w), 1))
    with torch.no_grad():
        w_new = vnet(cost_v)
    norm_v = torch.sum(w_new)
    w_v = w_new / norm_v if norm_v != 0 else w_new
    l_f = torch.sum(cost_v * w_v)
    optimizer_a.zero_grad()
    l_f.backward()
    optimizer_a.step()


def class_imbalance_optimisers(model, vnet):
    """Its optimisers: Nesterov SGD for both (the meta-net's lr raised from 1e-5 so that its step shows)."""
    a = torch.optim.SGD(model.parameters(), LR, momentum=0.9, nesterov=True, weight_decay=5e-4)
    return a, torch.optim.SGD(vnet.parameters(), 1e-2, momentum=0.9, nesterov=True, weight_decay=5e-4)


@pytest.mark.parametrize("meta_grad", ["jvp", "double_backward"])
def test_undetached_vnet_input_equals_the_class_imbalance_code(meta_grad):
    """detach_vnet_input=False with normalised weights is the class-imbalance code's step, in float64, over two
    iterations (momentum takes part): the same meta-weight-net and the same model after each."""
    model, vnet, batch, meta = setting("resnet", seed=4)
    ours, our_vnet = copy.deepcopy(model), copy.deepcopy(vnet)
    opt, vopt = class_imbalance_optimisers(ours, our_vnet)
    ref, ref_vnet = copy.deepcopy(model), copy.deepcopy(vnet)
    ref_opt, ref_vopt = class_imbalance_optimisers(ref, ref_vnet)
    for _ in range(2):
        mwnet_step(
            ours, our_vnet, opt, vopt, *batch, *meta, LR, normalize=True, meta_grad=meta_grad, detach_vnet_input=False
        )
        class_imbalance_step(ref, ref_vnet, ref_opt, ref_vopt, *batch, *meta, LR)
        a, b = vnet_grad(our_vnet), vnet_grad(ref_vnet)
        assert b.norm() > 0 and ((a - b).norm() / b.norm()).item() < 1e-9
        for key, value in our_vnet.state_dict().items():
            torch.testing.assert_close(value, ref_vnet.state_dict()[key], rtol=0, atol=1e-12, msg=key)
        for key, value in ours.state_dict().items():
            torch.testing.assert_close(value, ref.state_dict()[key], rtol=0, atol=1e-12, msg=key)
    # The flag matters: fed the detached loss, the meta-gradient is another one.
    detached = copy.deepcopy(vnet)
    m = copy.deepcopy(model)
    o, vo = class_imbalance_optimisers(m, detached)
    mwnet_step(m, detached, o, vo, *batch, *meta, LR, normalize=True, meta_grad=meta_grad)
    first = copy.deepcopy(vnet)
    m = copy.deepcopy(model)
    o, vo = class_imbalance_optimisers(m, first)
    mwnet_step(m, first, o, vo, *batch, *meta, LR, normalize=True, meta_grad=meta_grad, detach_vnet_input=False)
    assert ((vnet_grad(detached) - vnet_grad(first)).norm() / vnet_grad(first).norm()).item() > 1e-3


@pytest.mark.parametrize("channels_last", [False, True])
def test_the_lean_batchnorm_tangent_is_torchs_forward_mode_derivative(channels_last):
    """meta_step's BatchNorm tangent (5 operations) against torch's own forward-AD formula for training-mode
    BatchNorm on batch statistics, in float64: equal to rounding, whichever inputs carry a tangent."""
    import torch.autograd.forward_ad as fwAD

    from mwnet.method.meta_step import _LeanBatchNormTangents

    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, 5, 5, dtype=torch.float64, generator=g)
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    w, b = torch.randn(4, dtype=torch.float64, generator=g), torch.randn(4, dtype=torch.float64, generator=g)
    tangents = [torch.randn(t.shape, dtype=torch.float64, generator=g) for t in (x, w, b)]
    for carried in ([0, 1, 2], [0], [1, 2]):
        out = []
        for lean in (False, True):
            with torch.no_grad(), fwAD.dual_level():
                dual = [fwAD.make_dual(t, tangents[i]) if i in carried else t for i, t in enumerate((x, w, b))]
                if lean:
                    with _LeanBatchNormTangents():
                        y = F.batch_norm(dual[0], None, None, dual[1], dual[2], True, 0.0, 1e-5)
                else:
                    y = F.batch_norm(dual[0], None, None, dual[1], dual[2], True, 0.0, 1e-5)
                out.append(fwAD.unpack_dual(y))
        (y0, t0), (y1, t1) = out
        assert torch.equal(y0, y1)
        torch.testing.assert_close(t1, t0, rtol=1e-12, atol=1e-12)  # float64's rounding over 150 terms a channel
