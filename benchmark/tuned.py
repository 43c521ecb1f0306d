"""Tuned encoder weights: their canonical bytes and sha256, the file an entry ships, and the cache of fitted stages.

Methods that tune the encoders (`needs={"images"}`) hand the harness a `TunedWeights`: the tensors they
trained (a whole encoder, or a LoRA delta) and string metadata. Its canonical safetensors bytes (tensors
and metadata keys sorted, so the same weights give the same bytes on every run) are what the run's
`tuned_weights_sha256` names, what the re-encoded test features are cached under, and, when asked, the
file shipped beside the entry (`benchmark.results.weights_path`).

`StageCache` keeps the tensors of a fitted stage that several runs share (WiSE-FT's fine-tuning is the
same for every alpha), keyed by the run's identity (backbone, split, seed, device kind, code) plus the
stage's own settings, and remembers what computing it cost, so a run that reuses a stage still reports
the whole cost of its result.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmark.atomic import atomic_path
from benchmark.errors import OodbenchError

FORMAT = "oodbench-tuned-weights/1"
META_FORMAT = "oodbench_format"
META_METHOD = "oodbench_method"
META_KIND = "oodbench_kind"  # "encoder" (trained tensors of the model, plain names) or "lora" (a delta)
META_BASE = "oodbench_base_weights_sha256"  # the backbone the tensors apply to
KINDS = ("encoder", "lora")


@dataclass(frozen=True)
class TunedWeights:
    """Trained tensors (CPU, contiguous) and string metadata. `kind` and `base_weights_sha256` say how to
    apply them: "encoder" tensors replace the backbone's parameters of the same names (plus a method's own
    parameters such as `head.weight`); "lora" tensors are adapters whose spec is in the metadata."""

    tensors: Mapping[str, torch.Tensor]
    metadata: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def make(
        cls,
        tensors: Mapping[str, torch.Tensor],
        *,
        method: str,
        kind: str,
        base_weights_sha256: str,
        extra: Mapping[str, str] | None = None,
    ) -> TunedWeights:
        if kind not in KINDS:
            raise OodbenchError(f"Tuned weights kind must be one of {KINDS}, not {kind!r}.")
        meta = {
            META_FORMAT: FORMAT,
            META_METHOD: method,
            META_KIND: kind,
            META_BASE: base_weights_sha256,
            **{str(k): str(v) for k, v in (extra or {}).items()},
        }
        return cls({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, meta)

    @property
    def kind(self) -> str:
        return self.metadata.get(META_KIND, "")

    @property
    def method(self) -> str:
        return self.metadata.get(META_METHOD, "")

    def to_bytes(self) -> bytes:
        """Canonical safetensors bytes: the same tensors and metadata give the same bytes in every process
        (safetensors writes its header from a hash map, whose order varies; here the header's JSON is rewritten
        with sorted keys and no spaces, padded to 8 bytes, and the data block is kept as it is)."""
        from safetensors.torch import save

        tensors = {k: self.tensors[k].detach().to("cpu").contiguous() for k in sorted(self.tensors)}
        blob = save(tensors, metadata=dict(self.metadata))
        length = int.from_bytes(blob[:8], "little")
        header = json.dumps(json.loads(blob[8 : 8 + length]), sort_keys=True, separators=(",", ":")).encode()
        header += b" " * (-len(header) % 8)
        return len(header).to_bytes(8, "little") + header + blob[8 + length :]

    def sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @classmethod
    def from_bytes(cls, blob: bytes, *, where: str = "the weights") -> TunedWeights:
        from safetensors import SafetensorError
        from safetensors.torch import load

        try:
            tensors = load(blob)
            header_len = int.from_bytes(blob[:8], "little")
            meta = json.loads(blob[8 : 8 + header_len]).get("__metadata__") or {}
        except (SafetensorError, ValueError, UnicodeDecodeError) as err:
            raise OodbenchError(f"{where} is not a readable safetensors file ({err}).") from None
        if meta.get(META_FORMAT) != FORMAT:
            raise OodbenchError(
                f"{where} is not an oodbench tuned-weights file (its metadata has {META_FORMAT}="
                f"{meta.get(META_FORMAT)!r}, expected {FORMAT!r}); ship the file `oodbench run --save-weights` writes."
            )
        return cls(tensors, meta)

    @classmethod
    def read(cls, path: Path) -> TunedWeights:
        path = Path(path)
        try:
            blob = path.read_bytes()
        except OSError as err:
            raise OodbenchError(f"Cannot read the weights file {path}: {err.strerror}.") from None
        return cls.from_bytes(blob, where=f"The weights file {path}")

    def check_applies_to(self, *, method: str, base_weights_sha256: str) -> None:
        """The weights were trained by `method` on the backbone whose weights have this sha256."""
        if self.method != method:
            raise OodbenchError(
                f"These tuned weights were written by method {self.method!r}, not {method!r}; pass the file "
                f"that belongs to this entry."
            )
        if self.metadata.get(META_BASE) != base_weights_sha256:
            raise OodbenchError(
                f"These tuned weights apply to the backbone with weights sha256 {self.metadata.get(META_BASE)!r}, "
                f"but this run's backbone has {base_weights_sha256!r}; use the entry's backbone."
            )


def write_weights(path: Path, blob: bytes) -> Path:
    """Write canonical weight bytes atomically, never over an existing file."""
    path = Path(path)
    if path.exists():
        raise OodbenchError(f"{path} already exists; weights files are never overwritten.")
    try:
        with atomic_path(path, replace=False) as tmp:
            tmp.write_bytes(blob)
    except FileExistsError:
        raise OodbenchError(f"{path} appeared while writing; weights files are never overwritten.") from None
    except OSError as err:
        raise OodbenchError(f"Cannot write the weights file {path}: {err.strerror}.") from None
    return path


def trainable_copy(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """A deep copy of a frozen model with fp32 weights on `device`, in eval mode, nothing requiring grad yet
    (each method chooses what it trains); the original is never touched."""
    import copy

    return copy.deepcopy(model).float().to(device).eval().requires_grad_(False)


# ---------------------------------------------------------------- stage cache


def peak_memory_mb(device: torch.device) -> float:
    """The peak so far, without resetting it (the harness's own measurement of fit is running around a stage):
    CUDA memory allocated since the harness reset it, or the process's peak resident memory on a CPU."""
    import resource
    import sys

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


class StageCache:
    """Tensors of fitted stages shared by several runs, under `root/stages/<stage>/`. `identity` is what the
    harness knows makes a stage's result (backbone, split, seed, device kind, code); the method adds the
    settings of the stage itself. A file that cannot be read is recomputed; one that cannot be written is a
    warning. `root=None` turns caching off (every stage is computed)."""

    def __init__(self, root: Path | None, identity: Mapping[str, Any]) -> None:
        self.root = None if root is None else Path(root) / "stages"
        self.identity = dict(identity)
        self.reused_seconds = 0.0
        self.reused_peak_memory_mb = 0.0
        self.hits: dict[str, bool] = {}

    def digest(self, stage: str, settings: Mapping[str, Any]) -> str:
        blob = json.dumps({"stage": stage, "identity": self.identity, "settings": dict(settings)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def path(self, stage: str, settings: Mapping[str, Any]) -> Path | None:
        if self.root is None:
            return None
        return self.root / stage / f"{self.digest(stage, settings)[:32]}.safetensors"

    def get_or_compute(
        self,
        stage: str,
        settings: Mapping[str, Any],
        compute: Callable[[], Mapping[str, torch.Tensor]],
        *,
        device: torch.device,
    ) -> dict[str, torch.Tensor]:
        """The stage's tensors from the cache, or `compute()`d now (timed, its peak memory measured) and cached."""
        from safetensors.torch import load, save

        path = self.path(stage, settings)
        if path is not None and path.exists():
            try:
                blob = path.read_bytes()
                header_len = int.from_bytes(blob[:8], "little")
                meta = json.loads(blob[8 : 8 + header_len]).get("__metadata__") or {}
                if meta.get("digest") == self.digest(stage, settings):
                    self.reused_seconds += float(meta["seconds"])
                    self.reused_peak_memory_mb = max(self.reused_peak_memory_mb, float(meta["peak_memory_mb"]))
                    self.hits[stage] = True
                    return dict(load(blob))
            except Exception as err:  # damaged cache file: safetensors, json and float() raise several types
                warnings.warn(f"The stage cache {path} is unreadable ({err}); computing the stage again.", stacklevel=2)
        start = time.perf_counter()
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in compute().items()}
        seconds = time.perf_counter() - start
        self.hits[stage] = False
        if path is not None:
            meta = {
                "digest": self.digest(stage, settings),
                "seconds": repr(seconds),
                "peak_memory_mb": repr(peak_memory_mb(device)),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            try:
                with atomic_path(path) as tmp:
                    tmp.write_bytes(save({k: tensors[k] for k in sorted(tensors)}, metadata=meta))
            except OSError as err:
                warnings.warn(f"Cannot write the stage cache {path} ({err.strerror}); continuing.", stacklevel=2)
        return tensors
