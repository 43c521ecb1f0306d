"""The feature cache and extraction: every image of a dataset is encoded once per backbone.

A cache entry is keyed by (architecture, weights sha256, preprocessing, precision, dataset name,
version and list hash, feature kind). Extraction works in blocks written atomically, so an
interrupted run resumes with the blocks that are missing; under torchrun the blocks are shared
round-robin between ranks and rank 0 assembles the final file. Features are stored as float16
`.npy` and memory-mapped on load.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark.atomic import atomic_path, save_npy_atomic, write_json_atomic
from benchmark.backbones import Backbone
from benchmark.config import CACHE_ENV, PRECISIONS
from benchmark.data import LoadedDataset
from benchmark.distributed import all_agree, barrier, rank_world
from benchmark.encoders import FEATURE_KINDS
from benchmark.errors import OodbenchError
from benchmark.hashing import sha256_file
from benchmark.imagepipe import ImageBatches, TensorTransform, resolve_pipeline
from benchmark.progress import Progress

BLOCK_SIZE = 4096
AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # one per benchmark.config.PRECISIONS


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
    def __init__(self, dataset: LoadedDataset, preprocess) -> None:
        self.dataset, self.preprocess = dataset, preprocess

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.preprocess(self.dataset.get_image(i))


def preprocess_key(backbone: Backbone, pipeline: str | None = None) -> tuple[str, TensorTransform | None]:
    """The preprocessing part of the cache key, and the tensor transform when the fast pipeline
    (benchmark.imagepipe) reproduces the backbone's transform; None keeps the PIL path and its key."""
    transform = TensorTransform.from_transform(backbone.preprocess) if resolve_pipeline(pipeline) == "tensor" else None
    if transform is None:
        return backbone.preprocess_id, None
    return f"{backbone.preprocess_id} | {transform.describe(decoder=ImageBatches.decoder(backbone.device))}", transform


def _block_path(block_dir: Path, i: int) -> Path:
    return block_dir / f"{i:06d}.npy"


def _read_block(path: Path, rows: int) -> np.ndarray | None:
    """A finished block, or None when it is absent, unreadable or of the wrong shape (then it is encoded again).

    Blocks are renamed into place only once fully written, so a killed run leaves at most a hidden
    `.NNNNNN.npy.PID.tmp` file, which is never read."""
    if not path.exists():
        return None
    try:
        arr = np.load(path, mmap_mode="r")
    except Exception:  # truncated or garbled file: numpy raises ValueError, EOFError, OSError, ...
        return None
    return arr if arr.dtype == np.float16 and arr.ndim >= 1 and arr.shape[0] == rows else None


def _encode_blocks(
    backbone: Backbone,
    dataset: LoadedDataset,
    blocks: dict[int, range],
    block_dir: Path,
    *,
    kind: str,
    precision: str,
    batch_size: int,
    num_workers: int,
    progress,
    transform: TensorTransform | None = None,
) -> None:
    """Encode `blocks` (index -> image range) with one loader, saving each block atomically when complete: the
    fast tensor pipeline (`transform`, decoding in max(1, num_workers) threads) or the PIL DataLoader."""
    encoder = FEATURE_KINDS.get(kind)
    device = backbone.device
    order = sorted(blocks)
    batches = [list(blocks[b][s : s + batch_size]) for b in order for s in range(0, len(blocks[b]), batch_size)]
    owner = [b for b in order for _ in range(0, len(blocks[b]), batch_size)]
    if transform is not None:
        loader = ImageBatches(dataset, transform, batches, device=device, threads=num_workers)
    else:
        loader = contextlib.nullcontext(
            torch.utils.data.DataLoader(
                _Images(dataset, backbone.preprocess),
                batch_sampler=batches,
                num_workers=num_workers,
                pin_memory=device.type == "cuda",
                prefetch_factor=4 if num_workers > 0 else None,
            )
        )
    dtype = AUTOCAST[precision]
    pending: list[np.ndarray] = []
    with loader as loaded, torch.inference_mode():
        for j, images in enumerate(loaded):
            images = images.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                feats = encoder(backbone, images)
            pending.append(feats.float().cpu().numpy().astype(np.float16))
            progress.advance(len(images))
            if j + 1 == len(batches) or owner[j + 1] != owner[j]:
                save_npy_atomic(_block_path(block_dir, owner[j]), np.concatenate(pending))
                pending = []


def _load_final(folder: Path, key: FeatureKey, n: int) -> np.ndarray | None:
    """The cached features if complete and intact (meta.json written last, size, shape and sha256 match), else None.

    The file's sha256 is recomputed only when its modification time differs from the one recorded at
    writing: re-hashing a 10 GB patch-feature cache on every load would cost seconds each time."""
    final, meta_path = folder / "features.npy", folder / "meta.json"
    if not final.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        arr = np.load(final, mmap_mode="r")
        stat = final.stat()
        intact = (
            meta["digest"] == key.digest()
            and list(arr.shape) == meta["shape"]
            and arr.shape[0] == n
            and arr.dtype == np.float16
            and stat.st_size == meta["bytes"]
            and (stat.st_mtime_ns == meta.get("mtime_ns") or sha256_file(final) == meta["sha256"])
        )
    except Exception:  # missing/garbled meta.json, truncated .npy, ...
        return None
    return arr if intact else None


def _assemble(folder: Path, block_dir: Path, blocks: list[range], key: FeatureKey) -> None:
    """Rank 0: concatenate the blocks into features.npy through a memory map (never all in RAM), then meta.json."""
    parts = [_read_block(_block_path(block_dir, i), len(b)) for i, b in enumerate(blocks)]
    bad = [i for i, part in enumerate(parts) if part is None]
    if bad:
        raise OodbenchError(
            f"Feature blocks {bad[:10]} in {block_dir} are missing or damaged after extraction; "
            f"run again (they are re-encoded)."
        )
    final = folder / "features.npy"
    shape = (sum(len(b) for b in blocks), *parts[0].shape[1:]) if parts else (0,)
    with atomic_path(final) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)
        start = 0
        for part in parts:
            out[start : start + len(part)] = part
            start += len(part)
        out.flush()
        del out
    stat = final.stat()
    write_json_atomic(
        folder / "meta.json",
        {
            **key.__dict__,
            "digest": key.digest(),
            "shape": list(shape),
            "bytes": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "sha256": sha256_file(final),
        },
    )
    shutil.rmtree(block_dir, ignore_errors=True)


def extract_features(
    backbone: Backbone,
    dataset: LoadedDataset,
    *,
    cache_dir: Path,
    kind: str = "global",
    precision: str = "fp32",
    batch_size: int = 256,
    num_workers: int = 0,
    progress: Progress | None = None,
    block_size: int = BLOCK_SIZE,
    pipeline: str | None = None,
) -> Features:
    """Features of every image of `dataset`, from the cache or encoded now (and cached).

    Resumable: finished blocks of an interrupted run are kept and only missing ones are encoded. Under
    torchrun each rank encodes every world_size-th block and rank 0 assembles. A damaged cache file is
    detected (size, shape, sha256) and rebuilt with a warning. Out of device memory, the batch is halved
    (with a warning) until it fits. `pipeline` "tensor" (default, or $OODBENCH_IMAGE_PIPELINE) decodes and
    resizes with benchmark.imagepipe, "pil" with the backbone's PIL transform; each caches under its own key."""
    FEATURE_KINDS.get(kind)
    if precision not in PRECISIONS:
        raise OodbenchError(f"Unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}.")
    if block_size < 1:
        raise OodbenchError(f"block_size must be at least 1 (got {block_size}).")
    preprocess, transform = preprocess_key(backbone, pipeline)
    key = FeatureKey(
        backbone.arch,
        backbone.weights_sha256,
        preprocess,
        precision,
        dataset.spec.name,
        dataset.spec.version,
        dataset.list_sha256,
        kind,
    )
    folder = key.folder(cache_dir)
    final = folder / "features.npy"
    n = len(dataset)
    rank, world = rank_world()
    cached = _load_final(folder, key, n)
    if all_agree(cached is not None):
        return Features(cached, True, final)
    if rank == 0 and final.exists():
        warnings.warn(
            f"The feature cache {final} is incomplete or damaged (size, shape or checksum differs from "
            f"its meta.json); encoding {dataset.spec.name!r} again.",
            stacklevel=2,
        )
        final.unlink()
        (folder / "meta.json").unlink(missing_ok=True)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OodbenchError(
            f"Cannot create the feature cache folder {folder}: {err.strerror}. "
            f"Pass --cache-dir (or set {CACHE_ENV}) to a writable folder."
        ) from None
    barrier()
    progress = progress or Progress(enabled=False)
    blocks = [range(s, min(s + block_size, n)) for s in range(0, n, block_size)]
    block_dir = folder / "blocks"
    mine = {i: blocks[i] for i in range(len(blocks)) if i % world == rank}
    todo = {i: b for i, b in mine.items() if _read_block(_block_path(block_dir, i), len(b)) is None}
    with progress.task(
        f"encode {dataset.spec.name} ({kind})",
        total=sum(map(len, mine.values())),
        completed=sum(len(b) for i, b in mine.items() if i not in todo),
    ) as task:
        while todo:
            try:
                _encode_blocks(
                    backbone,
                    dataset,
                    todo,
                    block_dir,
                    kind=kind,
                    precision=precision,
                    batch_size=batch_size,
                    num_workers=num_workers,
                    progress=task,
                    transform=transform,
                )
                todo = {}
            except torch.OutOfMemoryError:
                if batch_size == 1:
                    raise OodbenchError(
                        f"Encoding {dataset.spec.name!r} runs out of device memory even one image at "
                        f"a time; use a device with more memory or --precision bf16."
                    ) from None
                batch_size //= 2  # finished blocks are kept; retry the rest with a batch that fits
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                warnings.warn(f"Out of device memory; continuing with --batch-size {batch_size}.", stacklevel=2)
                todo = {i: b for i, b in todo.items() if _read_block(_block_path(block_dir, i), len(b)) is None}
    barrier()
    if rank == 0:
        _assemble(folder, block_dir, blocks, key)
    barrier()
    arr = _load_final(folder, key, n)
    if arr is None:
        raise OodbenchError(
            f"The feature cache {final} could not be read back after writing; check the disk "
            f"(space, a shared filesystem visible to every rank) and run again."
        )
    return Features(arr, False, final)


def text_features(backbone: Backbone, classnames: list[str], templates: list[str], *, cache_dir: Path) -> torch.Tensor:
    """Zero-shot classifier weights [C, D]: per class the normalised mean of its normalised prompt embeddings."""
    blob = json.dumps(
        {"arch": backbone.arch, "weights": backbone.weights_sha256, "classnames": classnames, "templates": templates},
        sort_keys=True,
    ).encode()
    path = cache_dir / "text" / f"{hashlib.sha256(blob).hexdigest()[:24]}.npy"
    if path.exists():
        try:
            cached = np.load(path)
            if cached.ndim == 2 and cached.shape[0] == len(classnames) and np.isfinite(cached).all():
                return torch.from_numpy(cached).to(backbone.device)
            problem = f"shape {cached.shape} for {len(classnames)} classes"
        except Exception as err:  # truncated or garbled file: numpy raises several types
            problem = f"{type(err).__name__}: {err}"
        warnings.warn(
            f"The text-feature cache {path} is unreadable ({problem}); encoding the prompts again.", stacklevel=2
        )
    rows = []
    for name in classnames:
        emb = backbone.encode_text([t.format(name) for t in templates]).mean(0)
        rows.append(torch.nn.functional.normalize(emb, dim=-1))
    weights = torch.stack(rows)
    try:
        save_npy_atomic(path, weights.cpu().numpy())
    except OSError as err:  # the cache is an optimisation: a read-only or full disk only costs time next run
        warnings.warn(
            f"Cannot write the text-feature cache {path} ({err.strerror}); continuing without it.", stacklevel=2
        )
    return weights
