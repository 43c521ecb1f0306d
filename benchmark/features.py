"""The feature cache and extraction: every image of a dataset is encoded once per backbone.

A cache entry is keyed by (architecture, weights sha256, preprocessing, precision, dataset name,
version and list hash, feature kind). Extraction works in blocks written atomically, so an
interrupted run resumes with the blocks that are missing; under torchrun the blocks are shared
round-robin between ranks and rank 0 assembles the final file. Features are stored as float16
`.npy` and memory-mapped on load.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark.backbones import Backbone
from benchmark.data import LoadedDataset
from benchmark.encoders import FEATURE_KINDS
from benchmark.errors import OodbenchError
from benchmark.progress import Progress

CACHE_ENV = "OODBENCH_CACHE"
BLOCK_SIZE = 4096
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def default_cache_dir() -> Path:
    if CACHE_ENV in os.environ:
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser()
    return base / "oodbench"


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """Write `array` to `path` so that readers see either nothing or the whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def write_json_atomic(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    tmp.replace(path)


def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _barrier() -> None:
    if _dist()[1] > 1:
        torch.distributed.barrier()


@dataclass(frozen=True)
class FeatureKey:
    arch: str
    weights_sha256: str
    preprocess: str
    precision: str
    dataset: str
    dataset_version: int
    list_sha256: str
    kind: str

    def digest(self) -> str:
        blob = json.dumps(self.__dict__, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()

    def folder(self, cache_dir: Path) -> Path:
        safe_arch = self.arch.replace("/", "_")
        return cache_dir / "features" / safe_arch / self.dataset / f"{self.kind}-{self.digest()[:16]}"


@dataclass
class Features:
    array: np.ndarray  # float16, memory-mapped when read from the cache
    cache_hit: bool
    path: Path


class _Images(torch.utils.data.Dataset):
    def __init__(self, dataset: LoadedDataset, indices: range, preprocess) -> None:
        self.dataset, self.indices, self.preprocess = dataset, indices, preprocess

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int) -> torch.Tensor:
        return self.preprocess(self.dataset.get_image(self.indices[j]))


def _encode_block(backbone: Backbone, dataset: LoadedDataset, indices: range, *, kind: str, precision: str,
                  batch_size: int, num_workers: int, progress: Progress) -> np.ndarray:
    encoder = FEATURE_KINDS.get(kind)
    device = backbone.device
    loader = torch.utils.data.DataLoader(
        _Images(dataset, indices, backbone.preprocess), batch_size=batch_size, num_workers=num_workers,
        pin_memory=device.type == "cuda", persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
    )
    dtype = PRECISIONS[precision]
    out = []
    with torch.inference_mode():
        for images in loader:
            images = images.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                feats = encoder(backbone, images)
            out.append(feats.float().cpu().numpy().astype(np.float16))
            progress.advance(len(images))
    return np.concatenate(out) if out else np.zeros((0,), np.float16)


def extract_features(backbone: Backbone, dataset: LoadedDataset, *, cache_dir: Path, kind: str = "global",
                     precision: str = "fp32", batch_size: int = 256, num_workers: int = 0,
                     progress: Progress | None = None, block_size: int = BLOCK_SIZE) -> Features:
    """Features of every image of `dataset`, from the cache or encoded now (and cached)."""
    FEATURE_KINDS.get(kind)
    if precision not in PRECISIONS:
        raise OodbenchError(f"Unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}.")
    key = FeatureKey(backbone.arch, backbone.weights_sha256, backbone.preprocess_id, precision,
                     dataset.spec.name, dataset.spec.version, dataset.list_sha256, kind)
    folder = key.folder(cache_dir)
    final = folder / "features.npy"
    if final.exists():
        return Features(np.load(final, mmap_mode="r"), True, final)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OodbenchError(f"Cannot create the feature cache folder {folder}: {err.strerror}. "
                            f"Pass --cache-dir (or set {CACHE_ENV}) to a writable folder.") from None
    progress = progress or Progress(enabled=False)
    rank, world = _dist()
    n = len(dataset)
    blocks = [range(s, min(s + block_size, n)) for s in range(0, n, block_size)]
    block_dir = folder / "blocks"
    mine = [i for i in range(len(blocks)) if i % world == rank]
    todo = [i for i in mine if not (block_dir / f"{i:06d}.npy").exists()]
    done_images = sum(len(blocks[i]) for i in mine if i not in todo)
    with progress.task(f"encode {dataset.spec.name} ({kind})", total=sum(len(blocks[i]) for i in mine),
                       completed=done_images) as task:
        for i in todo:
            arr = _encode_block(backbone, dataset, blocks[i], kind=kind, precision=precision,
                                batch_size=batch_size, num_workers=num_workers, progress=task)
            save_npy_atomic(block_dir / f"{i:06d}.npy", arr)
    _barrier()
    if rank == 0 and not final.exists():
        parts = [np.load(block_dir / f"{i:06d}.npy") for i in range(len(blocks))]
        save_npy_atomic(final, np.concatenate(parts))
        write_json_atomic(folder / "meta.json", {**key.__dict__, "shape": list(np.load(final, mmap_mode="r").shape)})
        shutil.rmtree(block_dir, ignore_errors=True)
    _barrier()
    return Features(np.load(final, mmap_mode="r"), False, final)


def text_features(backbone: Backbone, classnames: list[str], templates: list[str], *, cache_dir: Path) -> torch.Tensor:
    """Zero-shot classifier weights [C, D]: per class the normalised mean of its normalised prompt embeddings."""
    blob = json.dumps({"arch": backbone.arch, "weights": backbone.weights_sha256,
                       "classnames": classnames, "templates": templates}, sort_keys=True).encode()
    path = cache_dir / "text" / f"{hashlib.sha256(blob).hexdigest()[:24]}.npy"
    if path.exists():
        return torch.from_numpy(np.load(path)).to(backbone.device)
    rows = []
    for name in classnames:
        emb = backbone.encode_text([t.format(name) for t in templates]).mean(0)
        rows.append(torch.nn.functional.normalize(emb, dim=-1))
    weights = torch.stack(rows)
    save_npy_atomic(path, weights.cpu().numpy())
    return weights
