"""Atomic file writes, the one implementation every result, cache, pin and record goes through.

A write goes to a hidden temporary file beside the target, is flushed and fsynced, then renamed into
place (and the folder fsynced), so a reader sees the old file, no file, or the whole new one; a write
that fails or is interrupted removes its temporary file. With `replace=False` an existing target is
never replaced: the rename is a hard link that fails if the name is taken.
"""

from __future__ import annotations

import errno
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TMP_SUFFIX = ".tmp"


def temporary_name(path: Path) -> Path:
    """The hidden temporary sibling a write to `path` uses (unique per process and call)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}")


def _fsync(path: Path, *, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:  # some filesystems cannot open folders; the rename is still atomic
            return
        raise
    try:
        os.fsync(fd)
    except OSError as err:
        if not directory or err.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _link_into_place(tmp: Path, path: Path) -> None:
    """Rename `tmp` to `path` unless `path` exists (FileExistsError), without a window in which both could win."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as err:  # no hard links on this filesystem: check, then rename
        if err.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if path.exists():
            raise FileExistsError(errno.EEXIST, "file exists", str(path)) from None
        os.replace(tmp, path)
        return
    tmp.unlink()


@contextmanager
def atomic_path(path: Path, *, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; when the block ends without error it is moved to `path`.

    `replace=False` raises FileExistsError instead of replacing an existing `path`. The temporary
    file is removed on every way out, so nothing half-written is ever left behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        _fsync(tmp)
        if replace:
            os.replace(tmp, path)
        else:
            _link_into_place(tmp, path)
        _fsync(path.parent, directory=True)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes, *, replace: bool = True) -> Path:
    with atomic_path(path, replace=replace) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: Path, text: str, *, replace: bool = True) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"), replace=replace)


def write_json_atomic(path: Path, obj: Any, *, replace: bool = True) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n", replace=replace)


def save_npy_atomic(path: Path, array: Any) -> Path:
    """`array` as a .npy file (numpy is imported here, not at module import)."""
    import numpy as np

    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.save(f, array)
    return Path(path)
