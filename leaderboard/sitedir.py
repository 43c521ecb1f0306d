"""Where a build writes: a temporary folder beside the site, swapped into place at the end, never left behind.

The site is written into `.<out>.tmp-<pid>-<token>` next to `out` and renamed into place when complete, so
readers never see half a site. The temporary folder is removed on every way out of the build: success (it
became the site), an error, Ctrl-C, and SIGTERM (turned into an exit while building). A build killed with
SIGKILL, or by a power cut, cannot clean up after itself; so every build holds an exclusive `flock` on its
temporary folder, and the next build removes every such folder next to `out` whose lock nobody holds: the
kernel drops a dead process's locks, so a live build's folder is never touched.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on Windows: stale folders of killed builds are then left in place
    fcntl = None  # type: ignore[assignment]


def _try_lock(folder: Path) -> int | None:
    """An open descriptor of `folder` holding its exclusive lock, or None when another process holds it."""
    if fcntl is None:
        return None
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _siblings(out: Path, kind: str) -> list[Path]:
    return [Path(p) for p in glob.glob(str(out.with_name(f".{glob.escape(out.name)}.{kind}-*")))]


def remove_stale(out: Path) -> list[Path]:
    """Remove the temporary and set-aside folders next to `out` that no live build holds; returns them."""
    removed = []
    for folder in _siblings(out, "tmp") + _siblings(out, "old"):
        if folder.is_symlink() or not folder.is_dir():
            continue
        fd = _try_lock(folder)
        if fd is None:
            continue  # a build that is still running
        try:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        finally:
            os.close(fd)
    return removed


@contextlib.contextmanager
def _sigterm_exits() -> Iterator[None]:
    """While building, SIGTERM raises SystemExit (so cleanup runs) instead of killing the process outright."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _name(out: Path, kind: str) -> Path:
    return out.with_name(f".{out.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def temporary_site(out: Path) -> Iterator[Path]:
    """A fresh, locked temporary folder next to `out` (stale ones of dead builds removed first); it is gone
    when the block ends, whether it was swapped into place or the build failed."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out)
    tmp = _name(out, "tmp")
    tmp.mkdir()
    fd = _try_lock(tmp)
    try:
        with _sigterm_exits():
            yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if fd is not None:
            os.close(fd)


def swap_into_place(tmp: Path, out: Path) -> None:
    """Replace `out` with the finished `tmp`; on failure the earlier site is put back."""
    old = _name(out, "old")
    fd = _try_lock(out) if out.exists() else None  # held while set aside, so no other build removes it
    try:
        if out.exists():
            out.replace(old)
        try:
            tmp.replace(out)
        except OSError:
            if old.exists():
                old.replace(out)  # put the earlier build back
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if fd is not None:
            os.close(fd)
