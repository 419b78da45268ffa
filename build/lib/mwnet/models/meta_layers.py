"""MetaModule and its layers: the original's API on ordinary PyTorch modules.

The original stored every weight as a buffer so that it could be swapped for a non-leaf tensor
(w - lr * grad) during the virtual step. Here the layers are thin subclasses of the torch layers
with real Parameters and standard state_dict keys, so optimisers, channels_last, autocast and
torch.func treat them as any module. The legacy API still works: `update_params` swaps a
Parameter for the updated tensor on that module, as the original did on its throwaway copy.
The training code itself takes the functional route (torch.func.functional_call), see meta_step.py.
"""

import torch
import torch.nn as nn


class MetaModule(nn.Module):
    """nn.Module plus the original's params(), named_params(), update_params(), set_param()."""

    def params(self):
        for _, param in self.named_params():
            yield param

    def named_params(self, curr_module=None, memo=None, prefix=""):
        """(name, tensor) of every parameter, also after update_params replaced it by a tensor."""
        module = self if curr_module is None else curr_module
        memo = set() if memo is None else memo
        for mod_prefix, mod in module.named_modules(prefix=prefix):
            for name in mod.__dict__.get("_meta_param_names") or list(mod._parameters):
                value = getattr(mod, name)
                if value is not None and id(value) not in memo:
                    memo.add(id(value))
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), value

    def update_params(self, lr_inner, first_order=False, source_params=None, detach=False):
        """Replace each parameter p by p - lr_inner * grad (grads from source_params, else p.grad)."""
        named = list(self.named_params())
        if detach:
            self.detach_params()
            return
        grads = list(source_params) if source_params is not None else [p.grad for _, p in named]
        for (name, param), grad in zip(named, grads, strict=True):
            if first_order:
                grad = grad.detach()
            self.set_param(self, name, param - lr_inner * grad)

    def detach_params(self):
        for name, param in list(self.named_params()):
            self.set_param(self, name, param.detach())

    def set_param(self, curr_mod, name, param=None):
        """Put tensor `param` at dotted `name` below curr_mod; set_param(name, param) also works."""
        if param is None and isinstance(curr_mod, str):
            curr_mod, name, param = self, curr_mod, name
        mod_path, _, leaf = name.rpartition(".")
        mod = curr_mod.get_submodule(mod_path) if mod_path else curr_mod
        if leaf in mod._parameters and not isinstance(param, nn.Parameter):
            # A plain tensor cannot sit in _parameters; remember the order, then hold it as an attribute.
            mod.__dict__.setdefault("_meta_param_names", list(mod._parameters))
            del mod._parameters[leaf]
        setattr(mod, leaf, param)


class MetaLinear(nn.Linear, MetaModule):
    pass


class MetaConv2d(nn.Conv2d, MetaModule):
    pass


class MetaConvTranspose2d(nn.ConvTranspose2d, MetaModule):
    pass


class MetaBatchNorm2d(nn.BatchNorm2d, MetaModule):
    pass


class VNet(MetaModule):
    """The meta-weight-net V(loss; Θ): Linear -> ReLU -> Linear -> sigmoid, a weight in (0, 1)."""

    def __init__(self, input=1, hidden=100, output=1):
        super().__init__()
        self.linear1 = MetaLinear(input, hidden)
        self.relu1 = nn.ReLU(inplace=True)
        self.linear2 = MetaLinear(hidden, output)

    def forward(self, x):
        return torch.sigmoid(self.linear2(self.relu1(self.linear1(x))))
