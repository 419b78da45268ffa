"""Files from outside the process (a user's weights, a run directory's checkpoints, label arrays): read and checked
so that whatever they hold ends in one line saying which file, what is wrong and what to do (docs/usage.md,
"What is refused").

The other readers own their formats and use these pieces: data/files.py (CIFAR's pickles, Fashion-MNIST's idx
files), data/cifar_n.py, data/clothing1m.py, runs/run_files.py (config, results, metrics, weights).
"""

import pickle
import warnings
import zipfile

import numpy as np

from mwnet.errors import UserError

# What torch.load raises on a file that is damaged, truncated or of another kind, across the torch releases
# the project declares (a zip without torch's records is a RuntimeError, an empty file an EOFError, text a
# KeyError, ...).
DAMAGED = (
    RuntimeError,
    EOFError,
    ValueError,
    TypeError,
    AttributeError,
    ImportError,
    IndexError,
    KeyError,
    OverflowError,
    MemoryError,
    zipfile.BadZipFile,
)


def _first_line(error):
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:100]


def torch_file(path, what, fix, name=None):
    """What torch.save wrote to `path`, loaded with weights_only: tensors, numbers, strings and containers,
    never code. `what` names the file expected ("a checkpoint of this project"), `fix` what to do instead,
    `name` how the line names the file (the path, or the flag that gave it)."""
    import torch

    name = name or path
    try:
        with warnings.catch_warnings():  # torch warns about a pickle protocol of files it then refuses anyway
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:
        raise UserError(f"{name}: cannot read it ({e.strerror or _first_line(e)}); {fix}") from None
    except pickle.UnpicklingError:
        # torch's weights-only unpickler refuses anything but tensors and plain data: other Python objects (and
        # with them code that would run on loading), or bytes that are no pickle at all. Its own message
        # suggests weights_only=False, the one thing not to do with a file of unknown origin: not repeated here.
        raise UserError(
            f"{name} holds more than tensors (other Python objects, code, or bytes that are not torch.save's) and was not loaded; {fix}"
        ) from None
    except DAMAGED as e:
        raise UserError(
            f"{name} is not {what} (damaged, cut short or another kind of file: {_first_line(e)}); {fix}"
        ) from None


def check_state(module, state, what, fix, name, skip=()):
    """`state` fits `module` as a state dict: the same keys (but those in `skip`, which may also differ in
    shape), each a tensor of the module's shape and dtype kind; `name` names the file. Checked before anything
    is loaded, so that a wrong file is one line rather than torch's list of mismatches."""
    import torch

    if not isinstance(state, dict):
        raise UserError(f"{name} holds a {type(state).__name__}, not {what}; {fix}")
    own = module.state_dict()
    missing = sorted(k for k in own if k not in state and k not in skip)
    unexpected = sorted(k for k in state if k not in own)
    if missing or unexpected:
        odd = (missing or unexpected)[0]
        raise UserError(
            f"{name} is not {what}: it lacks {len(missing)} of the model's entries and holds {len(unexpected)} others ({odd!r} among them); {fix}"
        )
    for key, value in state.items():
        if key in skip:
            continue
        mine = own[key]
        if not isinstance(value, torch.Tensor):
            raise UserError(f"{name} is not {what}: {key!r} holds a {type(value).__name__}, not a tensor; {fix}")
        if value.shape != mine.shape or value.is_floating_point() != mine.is_floating_point():
            raise UserError(
                f"{name} is not {what}: {key!r} is {value.dtype} {tuple(value.shape)}, the model's {mine.dtype} {tuple(mine.shape)}; {fix}"
            )


def labels_array(values, where, count, num_classes):
    """Class labels as int64: a list or array of `count` integral numbers in 0..num_classes-1, or one line
    naming `where` and what is wrong (3.5 is not a label the file meant, nor is 12 of 10 classes)."""
    try:
        a = np.asarray(values)
        if a.dtype == object or a.dtype.kind not in "iuf" or a.ndim != 1:
            raise TypeError
    except (TypeError, ValueError):
        raise UserError(f"{where} is not a list of class labels (numbers, one per image)") from None
    if a.shape != (count,):
        raise UserError(f"{where} holds {a.size} labels for {count} images")
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a) | (a != np.round(a))
        if bad.any():
            i = int(np.argmax(bad))
            raise UserError(
                f"{where}: label {a[i]:g} (image {i}) is not a whole number; class labels are 0..{num_classes - 1}"
            )
    if a.size and not 0 <= a.min() <= a.max() < num_classes:
        raise UserError(
            f"{where} has labels outside the {num_classes} classes 0..{num_classes - 1} ({a.min():g}..{a.max():g})"
        )
    return a.astype(np.int64)
