"""The run-output cache: what a fitted run's `predict` produced on every test set, kept once per run.

Keyed by everything that determines the outputs (backbone weights, preprocessing, image pipeline,
precision, the datasets' list hashes, method, config hash, shots, seed, few-shot split hash, the test stream and the
code), so a repeated run or a run that only adds a score reads the cached class logits (and the
method's extra arrays) and computes every score from them without loading the model. Scores that
read patch tokens keep a per-image reduction of the patch logits, stored per score variant; asking
for a variant that is not cached recomputes the run. `oodbench reproduce` never reads this cache.

The cache is an optimisation: a file that cannot be read is discarded with a warning (the run is
recomputed), and a cache that cannot be written costs a warning, never the run's results.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from benchmark.atomic import atomic_path, write_json_atomic

FORMAT = 2


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
    image_pipeline: str  # "tensor" or "pil": the features differ slightly (benchmark/imagepipe.py)
    precision: str
    suite: str
    suite_version: int
    dataset_hashes: str  # canonical JSON {dataset: list sha256}
    method: str
    config_hash: str
    shots: int
    seed: int
    fewshot_hash: str
    stream: str  # "<seed>/<batch size>" of the interleaved test stream
    code: str  # code_fingerprint()
    weights: str = ""  # sha256 of shipped tuned weights evaluated instead of fitting; "" when the method was fitted

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


@dataclass
class DatasetOutputs:
    """One test set's outputs in pinned-list order."""

    logits: np.ndarray  # [N, C] float32
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # MethodOutput.extra, per image
    local: dict[str, np.ndarray] = field(default_factory=dict)  # score variant -> [N] patch-logit reduction


@dataclass
class RunOutputs:
    """Every test set's outputs and what producing them cost."""

    datasets: dict[str, DatasetOutputs]
    logit_scale: float
    fit_seconds: float = 0.0
    predict_seconds: float = 0.0
    peak_memory_mb: float = 0.0
    tuned_weights_sha256: str = ""


class OutputCache:
    def __init__(self, cache_dir: Path) -> None:
        self.root = Path(cache_dir) / "outputs"

    def folder(self, key: OutputKey) -> Path:
        return self.root / key.method / key.digest()[:24]

    def load(self, key: OutputKey, *, datasets: list[str], local: list[str]) -> RunOutputs | None:
        """The cached outputs when every dataset and every requested local reduction is there, else None."""
        folder = self.folder(key)
        meta_path = folder / "meta.json"
        if not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("format") != FORMAT or meta.get("digest") != key.digest():
                return None
            if not all((folder / f"{name}.npz").exists() for name in datasets):
                return None  # another set of test sets (an older suite version): a miss, not damage
            out = {}
            for name in datasets:
                with np.load(folder / f"{name}.npz") as z:
                    if not all(f"local:{k}" in z for k in local):
                        return None
                    out[name] = DatasetOutputs(
                        logits=z["logits"],
                        extra={k.split(":", 1)[1]: z[k] for k in z.files if k.startswith("extra:")},
                        local={k.split(":", 1)[1]: z[k] for k in z.files if k.startswith("local:")},
                    )
            return RunOutputs(datasets=out, **meta["run"])
        except Exception as err:  # truncated, garbled or half-deleted cache files: numpy and json raise many types
            warnings.warn(
                f"The output cache {folder} is unreadable ({type(err).__name__}: {err}); discarding it "
                f"and computing the run again.",
                stacklevel=2,
            )
            shutil.rmtree(folder, ignore_errors=True)
            return None

    def save(self, key: OutputKey, outputs: RunOutputs) -> None:
        """Write every dataset's arrays, then meta.json (the completeness marker), each atomically. Local
        reductions cached earlier for the same logits are kept. A write that fails is a warning."""
        folder = self.folder(key)
        try:
            previous = self.load(key, datasets=list(outputs.datasets), local=[])
            (folder / "meta.json").unlink(missing_ok=True)
            for name, o in outputs.datasets.items():
                local = dict(o.local)
                old = previous.datasets[name] if previous is not None else None
                if old is not None and np.array_equal(old.logits, o.logits):
                    local = {**old.local, **local}
                arrays = {
                    "logits": o.logits,
                    **{f"extra:{k}": v for k, v in o.extra.items()},
                    **{f"local:{k}": v for k, v in local.items()},
                }
                with atomic_path(folder / f"{name}.npz") as tmp, tmp.open("wb") as f:
                    np.savez(f, **arrays)
            run = {fld.name: getattr(outputs, fld.name) for fld in fields(outputs) if fld.name != "datasets"}
            write_json_atomic(
                folder / "meta.json", {"format": FORMAT, "digest": key.digest(), "key": asdict(key), "run": run}
            )
        except OSError as err:
            warnings.warn(
                f"Cannot write the output cache {folder} ({err.strerror}); the results are written "
                f"anyway, the next run of this key recomputes.",
                stacklevel=2,
            )
