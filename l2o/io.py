"""Atomic file output: write to a temporary name in the same folder, then rename.

A job killed half-way therefore never leaves a file that looks complete, and a
write that fails (disk full, permission denied, read-only folder) raises
:class:`l2o.failures.OutputWriteError` naming the file the job meant to write,
with the temporary file removed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from l2o.failures import WRITE_ERRORS, OutputWriteError, write_error


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success only."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        _fsync(tmp)  # the bytes reach the disk before the name does: a power cut leaves no empty file
        os.replace(tmp, path)
        _fsync(path.parent)
    except Exception as exc:
        err = exc if isinstance(exc, OSError) and exc.errno in WRITE_ERRORS else write_error(exc)
        if err is None or isinstance(exc, OutputWriteError) or not _about(path, err.filename):
            raise
        raise OutputWriteError(err.errno, err.strerror, str(path)) from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _about(path: Path, filename) -> bool:
    """An error's ``filename`` is ``path``, a file in its folder (its temporary name) or a folder above it."""
    if filename is None:
        return True
    name = os.path.abspath(filename)
    target = os.path.abspath(path)
    return name == target or os.path.dirname(name) == os.path.dirname(target) or target.startswith(name + os.sep)


def _fsync(name) -> None:
    fd = os.open(name, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:  # some file systems cannot sync a folder
        if err.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)


def write_json_atomic(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2, sort_keys=True, default=float) + "\n")


def save_torch_atomic(obj: Any, path: Path) -> None:
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)  # through a Python file: a full disk raises OSError(ENOSPC), not a RuntimeError


def write_text_atomic(text: str, path: Path) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def content_hash(arrays: dict) -> str:
    """SHA-256 over named arrays' names, shapes, dtypes and bytes (order-independent).

    Unlike the bytes of an ``.npz`` (its zip entries carry timestamps), this is the
    same for two writes of the same data: use it as a data file's hash.

    >>> import numpy as np
    >>> content_hash({"a": np.zeros(2)}) == content_hash({"a": np.zeros(2)})
    True
    """
    import hashlib

    import numpy as np

    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.shape}:{a.dtype}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write_npz_atomic(arrays: dict, path: Path) -> None:
    """``np.savez`` of named arrays under a temporary name, renamed on success."""
    import numpy as np

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def read_npz(path: Path, what: str = "data file") -> dict:
    """All arrays of an ``.npz`` (no pickles); errors name the file."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist (run the data stage first)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except Exception as err:  # zip errors: not a valid .npz
        raise ValueError(f"{what} {path} is not a readable .npz file: {err}") from err
