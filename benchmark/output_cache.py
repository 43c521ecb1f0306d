"""The run-output cache: a fitted run's class logits and score values on each test set.

Keyed by everything that determines them (backbone weights, preprocessing, precision, the
datasets' list hashes, method, config hash, shots, seed and few-shot split hash), so re-running a
run reuses its outputs and costs seconds; asking for a score that is not cached recomputes the
run. `oodbench reproduce` never reads this cache: it refits.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def code_fingerprint(*extra_files: Path) -> str:
    """sha256 of oodbench's own Python sources (and `extra_files`, e.g. a method living outside the
    package): a code change, even one that keeps the version and config, invalidates cached outputs."""
    import benchmark
    import methods

    h = hashlib.sha256()
    roots = [Path(benchmark.__file__).parent, Path(methods.__file__).parent]
    files = sorted({p for r in roots for p in r.rglob("*.py")} | {Path(f) for f in extra_files})
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@dataclass(frozen=True)
class OutputKey:
    arch: str
    weights_sha256: str
    preprocess: str
    precision: str
    suite: str
    suite_version: int
    dataset_hashes: str  # canonical JSON {dataset: list sha256}
    method: str
    config_hash: str
    shots: int
    seed: int
    fewshot_hash: str
    code: str  # code_fingerprint()

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.__dict__, sort_keys=True).encode()).hexdigest()


@dataclass
class DatasetOutputs:
    logits: np.ndarray  # [N, C] float32
    scores: dict[str, np.ndarray]  # score name -> [N] float64


class OutputCache:
    def __init__(self, cache_dir: Path) -> None:
        self.root = Path(cache_dir) / "outputs"

    def _folder(self, key: OutputKey) -> Path:
        return self.root / key.method / key.digest()[:24]

    def load(self, key: OutputKey, *, datasets: list[str], scores: list[str]) -> dict[str, DatasetOutputs] | None:
        """The cached outputs when every dataset and score is there, else None."""
        folder = self._folder(key)
        if not (folder / "complete").exists():
            return None
        out = {}
        for name in datasets:
            path = folder / f"{name}.npz"
            try:
                with np.load(path) as z:
                    if not all(f"score:{s}" in z for s in scores):
                        return None
                    out[name] = DatasetOutputs(z["logits"], {s: z[f"score:{s}"] for s in scores})
            except (OSError, ValueError, KeyError):
                return None  # missing or damaged: recompute
        return out

    def save(self, key: OutputKey, outputs: dict[str, DatasetOutputs]) -> None:
        """Write every dataset's arrays, then the `complete` marker, each atomically."""
        folder = self._folder(key)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "complete").unlink(missing_ok=True)
        for name, o in outputs.items():
            tmp = folder / f".{name}.{os.getpid()}.tmp.npz"
            np.savez(tmp, logits=o.logits, **{f"score:{s}": v for s, v in o.scores.items()})
            tmp.replace(folder / f"{name}.npz")
        marker = folder / f".complete.{os.getpid()}.tmp"
        marker.write_text(json.dumps(key.__dict__, sort_keys=True))
        marker.replace(folder / "complete")
