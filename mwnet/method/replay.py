"""The forward-mode pass of the JVP meta-gradient from the values of the step's first forward.

u = J g, the derivative of the per-sample losses at w in the direction g, is what the meta step needs of the
training batch (meta_step.py). Dual tensors compute it together with the forward at w, which the step's first
forward has already computed (its logits serve steps 1 and 3). Here that first forward is recorded (`Tape`: each
torch function it calls, and by reference the values its rule reads) and the model runs a second time on
the tangents alone: the second run's calls are matched, one by one, with the recorded ones, and each call's
tangent is computed by that function's derivative rule (RULES) from the recorded primal values, which are not
computed again.

The rules are the derivatives torch's forward-mode AD uses for these functions (convolution, linear, BatchNorm
on batch statistics, ReLU, pooling, padding, views, sums); a call whose arguments carry no tangent returns its
recorded result, and so does a metadata query (`x.dim()`), so the second run follows the first run's control
flow and repeats none of its side effects (BatchNorm's `num_batches_tracked.add_(1)`). Anything else (a function
without a rule on a tangent, a call that differs from the recorded one, a recorded value changed in place since,
a tensor the replay did not make where a tangent would be: something computed out of the mode's sight) raises
Unsupported, and the caller takes the dual-tensor path, which gives the same derivative
(tests/test_replay.py compares both with torch.func.jvp on every model of the package).
"""

import itertools
import weakref

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


class Unsupported(Exception):
    """The second run cannot be matched with the recorded one, or has no rule for a call."""


class _Placeholder:
    """Where a recorded value that depends on the parameters is not read by its call's rule: its shape and dtype,
    which is all the second run compares (its tangent takes its place), and the value itself not held, so that the
    tape keeps alive nothing that autograd's graph would have freed (BatchNorm's outputs, the residual sums)."""

    __slots__ = ("shape", "dtype")

    def __init__(self, tensor):
        self.shape, self.dtype = tensor.shape, tensor.dtype


def _placeholder(value):
    return _Placeholder(value) if isinstance(value, torch.Tensor) and value.requires_grad else value


class _Call:
    __slots__ = ("func", "args", "kwargs", "out", "versions", "saved")

    def __init__(self, func, args, kwargs, out, versions, saved):
        self.func, self.args, self.kwargs, self.out = func, args, kwargs, out
        self.versions, self.saved = versions, saved

    def values(self):
        return itertools.chain(self.args, self.kwargs.values())

    def values_after_first(self):
        return itertools.chain(self.args[1:], self.kwargs.values())

    def unchanged(self, reads):
        """The values the rule reads ("args": the tensor arguments, "out": the result) as they were right after the
        call (no in-place change since)."""
        return _versions(self, reads) == self.versions


def _versions(call, reads):
    values = call.values() if reads == "args" else (call.out,)
    return [t._version for t in values if isinstance(t, torch.Tensor)]


def _bind(args, kwargs, names, defaults):
    """The arguments of a call by position, with the defaults of those not given."""
    if not kwargs and len(args) == len(names):
        return list(args)
    if len(args) > len(names):
        raise Unsupported(f"{len(args)} arguments where {len(names)} were expected")
    bound = list(args) + [None] * (len(names) - len(args))
    for i, name in enumerate(names):
        if i >= len(args):
            bound[i] = kwargs[name] if name in kwargs else defaults.get(name)
    unknown = set(kwargs) - set(names[len(args) :])
    if unknown:
        raise Unsupported(f"arguments {sorted(unknown)}")
    return bound


def batch_norm_tangent(x, weight, mean, invstd, eps, x_t, weight_t, bias_t):
    """The tangent of training-mode BatchNorm on the batch's statistics (mean, invstd: the batch's, per channel).

    With x^ = (x - mean) * invstd, y' = w x^' + w' x^ + b' with x^' = invstd * (x' - mean(x') - x^ mean(x' x^)) (the
    derivative of the batch's normalisation, its mean and biased variance included). w x^' is BatchNorm's backward
    formula with x' in the place of the output's gradient, so torch's own kernel computes it
    (`native_batch_norm_backward`: a reduction and one pass over the tensor); the rest is (x - mean) * (w' invstd) +
    b' in three passes. The subtraction comes first, as in x^: no cancellation where a channel's mean is large
    against its spread. 5 operations where torch's formula takes 21."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    if x_t is None:
        y_t = torch.zeros_like(x)
    else:  # w x^', in x_t's memory format
        y_t = torch.ops.aten.native_batch_norm_backward(
            x_t, x, weight, None, None, mean, invstd, True, eps, [True, False, False]
        )[0]
    if weight_t is not None:
        y_t.addcmul_(x - mean.view(shape), (weight_t * invstd).view(shape))
    return y_t if bias_t is None else y_t.add_(bias_t.view(shape))


def loss_tangent(logits, targets, logits_t):
    """The tangent of the per-sample cross-entropy: <softmax(z), z'> - z'[y], as torch's log_softmax and nll_loss
    formulas give it."""
    probs = torch.softmax(logits, 1)
    return (probs * logits_t).sum(1) - logits_t.gather(1, targets.unsqueeze(1)).squeeze(1)


# Each rule: (reads, saves, tangent). reads: the recorded primal values the rule uses, "args" (the tensor arguments)
# or "out" (the result), checked unchanged first (None: none);
# saves(out) -> what the rule takes from the recorded call's autograd node, at recording time (None: nothing);
# tangent(call, args, kwargs) -> the result's tangent from the second run's arguments (tangents where they differ
# from the recorded ones).

_CONV = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_CONV_DEFAULTS = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}


def _tangents(call, args, kwargs, names, defaults):
    primal = _bind(call.args, call.kwargs, names, defaults)
    given = _bind(args, kwargs, names, defaults)
    return primal, [_tangent_of(a, p) for a, p in zip(given, primal, strict=True)]


def _tangent_of(a, p):
    """The tangent the second run's argument a carries where the recorded call had p (None: none, a is p)."""
    return a if isinstance(p, (torch.Tensor, _Placeholder)) and a is not p else None


def _affine(op, names, defaults):
    """conv2d and linear: op(x', w) + op(x, w', b')."""

    def tangent(call, args, kwargs):
        (x, w, _, *rest), (x_t, w_t, b_t, *rest_t) = _tangents(call, args, kwargs, names, defaults)
        if any(t is not None for t in rest_t) or (w_t is None and b_t is not None):
            raise Unsupported(f"{op.__name__} with a tangent on other than its input and weight")
        out = None if x_t is None else op(x_t, w, None, *rest)
        if w_t is not None:
            by_weight = op(x, w_t, b_t, *rest)
            out = by_weight if out is None else out.add_(by_weight)
        return out

    return tangent


_BN = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
_BN_DEFAULTS = {"weight": None, "bias": None, "training": False, "momentum": 0.1, "eps": 1e-5}


def _saved_batch_stats(out):
    node = out.grad_fn
    if type(node).__name__ == "NativeBatchNormBackward0":
        return node._saved_result1, node._saved_result2  # the batch's mean and 1 / sqrt(var + eps)
    return None


def _batch_norm(call, args, kwargs):
    (x, running_mean, running_var, w, _, training, _, eps), tangents = _tangents(call, args, kwargs, _BN, _BN_DEFAULTS)
    x_t, rm_t, rv_t, w_t, b_t = tangents[:5]
    if not (training or (running_mean is None and running_var is None)):
        raise Unsupported("BatchNorm on running statistics")
    if rm_t is not None or rv_t is not None or x.dtype not in (torch.float32, torch.float64):
        raise Unsupported("BatchNorm with tangents on its statistics, or in a low precision")
    if w is not None and w.dtype != x.dtype:
        raise Unsupported("BatchNorm with its weight and input in two precisions")
    if call.saved is not None:
        mean, invstd = call.saved
    else:
        var, mean = torch.var_mean(x, [0, *range(2, x.dim())], correction=0)
        invstd = (var + eps).rsqrt()
    return batch_norm_tangent(x, w, mean, invstd, eps, x_t, w_t, b_t)


def _relu(call, args, kwargs):
    (_, inplace), (x_t, _) = _tangents(call, args, kwargs, ("input", "inplace"), {"inplace": False})
    if inplace:  # the tangent changes in place as the value did
        return torch.ops.aten.threshold_backward.grad_input(x_t, call.out, 0, grad_input=x_t)
    return torch.ops.aten.threshold_backward(x_t, call.out, 0)


_POOL = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
_POOL_DEFAULTS = {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False, "return_indices": False}


def _saved_indices(out):
    node = out.grad_fn
    return node._saved_result1 if type(node).__name__ == "MaxPool2DWithIndicesBackward0" else None


def _max_pool2d(call, args, kwargs):
    (x, *rest), (x_t, *_) = _tangents(call, args, kwargs, _POOL, _POOL_DEFAULTS)
    if rest[-1]:
        raise Unsupported("max_pool2d returning its indices")
    indices = call.saved
    if indices is None:
        indices = F.max_pool2d(x, *rest[:-1], return_indices=True)[1]
    return x_t.flatten(-2).gather(-1, indices.flatten(-2)).view(call.out.shape)


def _linear_in_first(call, args, kwargs):
    """A function linear in its first argument (a view, a pooling by averages, padding with zeros): applied to the
    tangent, the other arguments as recorded."""
    if any(_carries(a, p) for a, p in zip(itertools.chain(args[1:], kwargs.values()), call.values_after_first())):
        raise Unsupported(f"{call.func.__name__} with a tangent on other than its first argument")
    return call.func(*args, **kwargs)


def _pad(call, args, kwargs):
    _, _, mode, value = _bind(
        call.args, call.kwargs, ("input", "pad", "mode", "value"), {"mode": "constant", "value": None}
    )
    if mode != "constant" or value not in (None, 0):
        raise Unsupported("padding other than with zeros")
    return _linear_in_first(call, args, kwargs)


def _sum_of_two(call, args, kwargs):
    """a + b: a' + b' (a new tensor, as the sum is)."""
    if len(args) != 2 or kwargs:
        raise Unsupported("a sum other than a + b")
    a_t, b_t = (_tangent_of(a, p) for a, p in zip(args, call.args, strict=True))
    if a_t is not None and b_t is not None:
        return torch.add(a_t, b_t)
    one = a_t if a_t is not None else b_t
    if one.shape != call.out.shape:
        raise Unsupported("a sum that broadcasts its tangent")
    return one.clone()


def _add_in_place(call, args, kwargs):
    """a += b: a' += b'."""
    if len(args) != 2 or kwargs:
        raise Unsupported("an in-place sum other than a += b")
    a_t, b_t = (_tangent_of(a, p) for a, p in zip(args, call.args, strict=True))
    if a_t is None:
        raise Unsupported("a constant that gains a tangent in place")
    return a_t if b_t is None else a_t.add_(b_t)


def _is_linear(*funcs):
    return {f: (None, None, _linear_in_first) for f in funcs}


RULES = {
    torch.conv2d: ("args", None, _affine(torch.conv2d, _CONV, _CONV_DEFAULTS)),
    F.linear: ("args", None, _affine(F.linear, ("input", "weight", "bias"), {"bias": None})),
    F.batch_norm: ("args", _saved_batch_stats, _batch_norm),
    F.relu: ("out", None, _relu),
    F.max_pool2d: ("args", _saved_indices, _max_pool2d),
    F.pad: (None, None, _pad),
    torch.Tensor.add: (None, None, _sum_of_two),
    torch.Tensor.__add__: (None, None, _sum_of_two),
    torch.Tensor.__radd__: (None, None, _sum_of_two),
    torch.add: (None, None, _sum_of_two),
    torch.Tensor.add_: (None, None, _add_in_place),
    torch.Tensor.__iadd__: (None, None, _add_in_place),
    **_is_linear(
        F.avg_pool2d,
        F.adaptive_avg_pool2d,
        torch.flatten,
        torch.Tensor.flatten,
        torch.Tensor.view,
        torch.Tensor.reshape,
        torch.reshape,
        torch.Tensor.__getitem__,
        torch.Tensor.contiguous,
    ),
}


def _tensors(values):
    """The tensors among values, and in lists and tuples among them."""
    for v in values:
        if isinstance(v, torch.Tensor):
            yield v
        elif isinstance(v, (list, tuple)):
            yield from _tensors(v)


def _has_tensor(value):
    return isinstance(value, _Placeholder) or next(_tensors((value,)), None) is not None


def _carries(a, p):
    """Whether the second run's argument a carries a tangent where the recorded call had p (False: a is p, or
    equal to it); Unsupported where it cannot be matched."""
    if a is p:
        return False
    if isinstance(p, (torch.Tensor, _Placeholder)):
        if isinstance(a, torch.Tensor) and a.shape == p.shape and a.dtype == p.dtype:
            return True
    elif isinstance(p, (list, tuple)):
        if type(a) is type(p) and len(a) == len(p) and not any(_carries(x, y) for x, y in zip(a, p)):
            return False
    elif not isinstance(a, torch.Tensor) and _equal(a, p):
        return False
    raise Unsupported("an argument unlike the recorded one")


def _equal(a, p):
    """a == p for the arguments of a call (numbers, strings, tuples); False where the comparison does not give one
    truth value (an array, say)."""
    try:
        return bool(a == p)
    except (TypeError, ValueError, RuntimeError):
        return False


class Tape(TorchFunctionMode):
    """Records a forward: `with tape: logits = model(inputs)`; then `tape.tangent(model, inputs, direction)`.

    The forward itself runs as without the tape (each call is passed through unchanged). `usable` turns False at
    the first call the second run could not follow: a function without a rule on a value that depends on the
    parameters (it requires a gradient); the recording stops there."""

    def __init__(self):
        super().__init__()
        self.calls = []
        self.usable = True

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if not self.usable:
            return out
        rule = RULES.get(func)
        values = list(itertools.chain(args, kwargs.values()))
        if rule is None and _has_tensor(out) and any(t.requires_grad for t in _tensors(values)):
            self.usable = False  # the second run would need this function's derivative
            return out
        reads, saves = (None, None) if rule is None else rule[:2]
        saved = saves(out) if saves is not None and isinstance(out, torch.Tensor) else None
        if rule is not None and reads != "args":
            args, kwargs = tuple(_placeholder(a) for a in args), {k: _placeholder(v) for k, v in kwargs.items()}
        call = _Call(func, args, kwargs, out if reads == "out" or rule is None else _placeholder(out), None, saved)
        if reads is not None:
            call.versions = _versions(call, reads)
        self.calls.append(call)
        return out

    def tangent(self, model, inputs, direction, output):
        """The tangent of the recorded forward's `output` (model(inputs)) in the parameters' `direction` (a dict by
        name), or None where the second run cannot follow the first: the caller then takes the dual-tensor path."""
        if not self.usable:
            return None
        second = _Second(self.calls, direction.values())
        try:
            with torch.no_grad(), second:
                out_t = torch.func.functional_call(model, direction, (inputs,))
        except Unsupported:
            return None
        if second.position != len(self.calls) or not isinstance(out_t, torch.Tensor) or id(out_t) not in second.known:
            return None
        return out_t if out_t.shape == output.shape else None


class _Second(TorchFunctionMode):
    """The second run, on the tangents: each call matched with the recorded call at its position."""

    def __init__(self, calls, direction):
        super().__init__()
        self.calls = calls
        self.position = 0
        # the tangents the run may carry: the direction's and those its rules made, while they live (weakly held:
        # freed as the run goes on, their ids leave with them); any other tensor where a recorded value was is
        # something computed out of the mode's sight
        self.known = weakref.WeakValueDictionary({id(t): t for t in direction})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.position == len(self.calls):
            raise Unsupported("more calls than recorded")
        call = self.calls[self.position]
        self.position += 1
        if (
            not (func is call.func or func == call.func)
            or len(args) != len(call.args)
            or kwargs.keys() != call.kwargs.keys()
        ):
            raise Unsupported(
                f"{getattr(func, '__name__', func)} where {getattr(call.func, '__name__', call.func)} was recorded"
            )
        values = list(itertools.chain(args, kwargs.values()))
        carried = [_carries(a, p) for a, p in zip(values, call.values(), strict=True)]
        if any(c and id(a) not in self.known for a, c in zip(values, carried)):
            raise Unsupported("a tangent that the replay did not make")
        if not any(carried) or not _has_tensor(call.out):
            if isinstance(call.out, _Placeholder):  # a value that depends on the parameters reached without a tangent
                raise Unsupported("a recorded value that depends on the parameters, without a tangent")
            return call.out  # the recorded value: no tangent reaches it
        rule = RULES.get(func)
        if rule is None:
            raise Unsupported(f"no rule for {getattr(func, '__name__', func)}")
        if rule[0] is not None and not call.unchanged(rule[0]):
            raise Unsupported("a recorded value changed in place since")
        out = rule[2](call, args, kwargs)
        self.known[id(out)] = out
        return out
