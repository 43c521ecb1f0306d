"""Walk a user's copy of a dataset without leaving it: links must stay inside, and loops are refused.

`data prepare` follows symlinks, since many people keep large image sets behind links. A link may
point anywhere inside the copy (a folder shown twice is allowed), but a link that resolves outside the
copy would pin files that are not part of it, and a folder link that points at one of its own
ancestors would be walked again and again. Both stop with a DataError naming the link and its target.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from benchmark.errors import DataError


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def check_inside(path: Path, *, root: Path) -> Path:
    """The real path of `path`; DataError when it (a link, or a link among its folders) leads outside `root`."""
    real_root, real = _real(root), _real(path)
    if real != real_root and real_root not in real.parents:
        raise DataError(
            f"{path} is a link to {real}, outside your copy {real_root}. Links may not leave the copy: "
            f"put the files themselves inside it (or pass the folder that holds them all) and run again."
        )
    return real


def files_inside(folder: Path, *, root: Path, keep: Callable[[str], bool]) -> list[Path]:
    """Every file under `folder` whose name `keep` accepts, following links that stay inside `root`.

    Names starting with '.' are skipped. A link (to a file or a folder) that resolves outside `root`,
    and a folder link that resolves to a folder it lies in (a loop), raise DataError.
    """
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder; pass the folder that holds the images.")
    out: list[Path] = []
    stack = [(folder, ())]  # (folder, real paths of the folders it lies in)
    while stack:
        here, chain = stack.pop()
        real = check_inside(here, root=root)
        if real in chain:
            raise DataError(
                f"{here} is a symlink loop: it points at {real}, a folder it lies in, so the copy would be "
                f"walked without end. Remove the link (a copy's folders must form a tree) and run again."
            )
        try:
            entries = sorted(os.scandir(here), key=lambda e: e.name)
        except OSError as err:
            raise DataError(f"Cannot read the folder {here}: {err.strerror}. Check its permissions.") from None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = here / entry.name
            if entry.is_dir():  # follows a link, like os.walk(followlinks=True)
                stack.append((path, (*chain, real)))
            elif keep(entry.name):
                if entry.is_symlink():
                    check_inside(path, root=root)
                out.append(path)
    return out


def check_listed_inside(root: Path, rels: list[str]) -> None:
    """DataError when a listed file, or a folder it lies in, is a link leading outside `root` (layouts that read
    their paths from text files rather than walking the copy). Each folder is resolved once."""
    folders: set[Path] = set()
    for rel in rels:
        path = root / rel
        if path.parent not in folders:
            check_inside(path.parent, root=root)
            folders.add(path.parent)
        if path.is_symlink():
            check_inside(path, root=root)
