"""The site builder's cache of parsed result files, keyed by the sha256 of each file's bytes.

Reading one small result file costs 1-3 ms whatever its size: pyarrow decodes its footer and 55 column
chunks. With 10,000 files that is most of a build. Parsing (benchmark.results.parse_bytes: the columns, their
types, UTF-8, the cast to the schema) is a pure function of the bytes, so its outcome is kept under their
sha256: a file whose bytes changed is a new key, and a cached entry can only ever stand for the very bytes
it was parsed from. Values are validated again on every build (they depend on the registered suites and
scores), and the sha256 of every file is computed on every build.

The cache is one Parquet file, `<cache>/site/parsed.parquet`: the rows of every cached file, one after the
other, and in its metadata the index (sha256 -> schema version, first row, row count, or the problems that
kept the file from parsing) with a fingerprint of this oodbench's schema code and pyarrow's version. It is
rewritten atomically after a build that parsed something new, holding exactly the files of that build; a
cache with another fingerprint, or one that cannot be read, is ignored (and replaced).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import benchmark
import benchmark.results as results_module
from benchmark.atomic import atomic_path
from benchmark.results import SCHEMA, Parsed

CACHE_NAME = Path("site") / "parsed.parquet"
INDEX_KEY = b"oodbench-parsed-index"


def fingerprint() -> str:
    """What a cached parse depends on besides the bytes: the parsing code (results.py), the schema, pyarrow."""
    code = Path(results_module.__file__).read_bytes()
    blob = b"\n".join([code, str(SCHEMA).encode(), pa.__version__.encode(), benchmark.__version__.encode()])
    return hashlib.sha256(blob).hexdigest()


class ParsedCache:
    """Parsed result files by the sha256 of their bytes: `get` before parsing, `take` the hits' rows, `save` at
    the end."""

    def __init__(self, cache_dir: Path | None) -> None:
        self.path = Path(cache_dir) / CACHE_NAME if cache_dir is not None else None
        self._fingerprint = fingerprint() if self.path else ""
        self._index: dict[str, dict] = {}
        self._table: pa.Table | None = None
        self.missed = False  # a file was parsed anew: the cache is rewritten
        self.hits = 0
        if self.path is not None and self.path.is_file():
            self._load()

    def _load(self) -> None:
        try:
            text = [f.name for f in SCHEMA if pa.types.is_string(f.type)]
            table = pq.read_table(self.path, read_dictionary=text)  # text stays encoded: fast and small
            meta = json.loads((table.schema.metadata or {}).get(INDEX_KEY, b"{}"))
            if meta.get("fingerprint") != self._fingerprint or table.column_names != SCHEMA.names:
                self.missed = True
                return
            self._index, self._table = meta["files"], table.replace_schema_metadata(None)
        except Exception:  # noqa: BLE001 - an unreadable cache is ignored and rewritten
            self._index, self._table = {}, None

    def get(self, sha256: str) -> Parsed | None:
        """The cached parse of the file whose bytes have this sha256 (without its table: `take` gives the rows
        of many hits as one table), or None."""
        entry = self._index.get(sha256)
        if entry is None:
            self.missed = True
            return None
        self.hits += 1
        if "problems" in entry:
            return Parsed(entry["version"], None, list(entry["problems"]))
        return Parsed(entry["version"], None, [], entry["rows"])

    def take(self, shas: list[str]) -> pa.Table:
        """The cached rows of these files (each a hit with rows), one after the other, as one table."""
        assert self._table is not None
        spans = [(self._index[s]["start"], self._index[s]["rows"]) for s in shas]
        if spans and spans[0][0] == 0 and all(a + n == b for (a, n), (b, _) in zip(spans, spans[1:], strict=False)):
            return self._table.slice(0, spans[-1][0] + spans[-1][1])  # the files of last time, in order: no copy
        indices = np.concatenate([np.arange(a, a + n) for a, n in spans]) if spans else np.zeros(0, np.int64)
        return self._table.take(pa.array(indices))

    def save(self, items: list[tuple[str | None, Parsed]], table: pa.Table) -> None:
        """Write the cache anew, when a file was not in it: `items` (sha256, Parsed) are this build's files, and
        `table` their rows one after the other in that order. A cache that cannot be written costs the next
        build time, nothing else."""
        if self.path is None or not self.missed:
            return
        index: dict[str, dict] = {}
        start = 0
        for sha, p in items:
            if sha is None:
                continue
            if p.rows:
                index[sha] = {"version": p.version, "start": start, "rows": p.rows}
                start += p.rows
            else:
                index[sha] = {"version": p.version, "problems": p.problems}
        meta = json.dumps({"fingerprint": self._fingerprint, "files": index}, separators=(",", ":")).encode()
        try:
            with atomic_path(self.path) as tmp:
                pq.write_table(table.replace_schema_metadata({INDEX_KEY: meta}), tmp)
        except OSError:
            pass
