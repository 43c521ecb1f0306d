"""What a site build keeps between builds: JSON files of numbers under the oodbench cache (`<cache>/site`).

Each entry is one file named by a sha256 key of everything it depends on (the sha256s of the per-sample
score files read, the settings, the version of the computation). Only numbers are read back, parsed and
checked by the caller; nothing cached is ever taken as markup. A folder that cannot be read or written
costs time, never the build: the value is computed again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from benchmark.atomic import write_json_atomic

T = TypeVar("T")


class JsonCache:
    def __init__(self, folder: Path | None, *, what: str) -> None:
        self.folder, self.what = folder, what
        self.hits = self.misses = 0
        self.warnings: list[str] = []

    def _path(self, key: str) -> Path:
        assert self.folder is not None
        return self.folder / key[:2] / f"{key}.json"

    def read(self, key: str, parse: Callable[[Any], T]) -> T | None:
        """The value stored under `key`, through `parse` (which raises on anything malformed), or None."""
        if self.folder is None:
            return None
        try:
            found = parse(json.loads(self._path(key).read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self.misses += 1
            return None
        self.hits += 1
        return found

    def write(self, key: str, data: Any) -> None:
        if self.folder is None:
            return
        try:
            path = self._path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, data)
        except OSError as err:
            if not self.warnings:
                self.warnings.append(
                    f"cannot write the {self.what} cache under {self.folder} ({err.strerror}); the next build "
                    "computes them again"
                )
