"""Writing a run's files atomically: a temporary file moved over the old one, so that a reader sees the old
file or the whole new one; JSON never holds NaN or Infinity; a failed write (a full disk, no permission) is one
line and leaves the previous file unchanged. A run directory (run_files.RunDir) writes through a Writer."""

import errno
import json
import math
import os
import shutil
import tempfile

import numpy as np

from mwnet.errors import UserError

TMP_PREFIX = ".tmp-"  # a write cut short leaves at most such a file, which the next start removes
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _clean(obj):
    """JSON-safe: non-finite floats become None (null), NumPy scalars plain numbers."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def to_json(obj, indent=None):
    return json.dumps(_clean(obj), indent=indent, allow_nan=False)


def _write_failure(path, e):
    """One line for a failed write: what, why, and that the previous file is unchanged."""
    folder = os.path.dirname(os.path.abspath(path))
    full = isinstance(e, OSError) and e.errno == errno.ENOSPC
    if not full and os.path.isdir(folder):
        full = shutil.disk_usage(folder).free < 2**20
    if full:
        return UserError(
            f"could not write {path}: the disk is full; free some space (the previous file is unchanged), then continue with --resume"
        )
    reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0][:120]
    return UserError(
        f"could not write {path} ({reason}); check the folder's permissions and space, or choose another --out"
    )


def write_atomic(path, write):
    """Call write(tmp_path), then move it over `path`: readers see the old file or the whole new one.
    A failure (full disk, no permission) removes the temporary file and raises one UserError line."""
    tmp = None
    try:
        folder, name = os.path.split(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=TMP_PREFIX, suffix="-" + name)  # torch.save wants the extension
        os.close(fd)
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; the file it replaces was not
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise _write_failure(path, e) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def write_json(path, obj):
    write_text_atomic(path, to_json(obj, indent=2) + "\n")


def write_text_atomic(path, text):
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    write_atomic(path, write)


def save_npz_atomic(path, **arrays):
    def write(tmp):
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a bare name
            np.savez(f, **arrays)

    write_atomic(path, write)


def _torch_save(state, path):
    import torch

    try:
        torch.save(state, path)
    except RuntimeError as e:  # torch reports a failed write (a full disk among them) as a RuntimeError
        raise OSError(errno.EIO, f"write failed: {str(e).splitlines()[0][:100]}") from None


class Writer:
    """The one way a run directory (run_files.RunDir) writes into its folder: atomically, or appending a line."""

    def __init__(self, path):
        self.path = path

    def atomic(self, name, write):
        write_atomic(os.path.join(self.path, name), write)

    def text(self, name, text):
        write_text_atomic(os.path.join(self.path, name), text)

    def json(self, name, obj):
        write_json(os.path.join(self.path, name), obj)

    def npz(self, name, **arrays):
        save_npz_atomic(os.path.join(self.path, name), **arrays)

    def append(self, name, text):
        with open(os.path.join(self.path, name), "a") as f:
            f.write(text)

    def remove(self, name):
        path = os.path.join(self.path, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


class NoWriter:
    """The writer of a process that must not write (run_files.ReadOnlyRunDir): each of Writer's methods, doing
    nothing."""

    def __getattr__(self, name):
        if callable(getattr(Writer, name, None)) and not name.startswith("__"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)
