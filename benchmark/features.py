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
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark.atomic import atomic_path, save_npy_atomic, write_json_atomic
from benchmark.backbones import Backbone
from benchmark.config import CACHE_ENV, DEFAULT_EXECUTION, PRECISIONS
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
    sink: Callable[[int, np.ndarray], None] | None = None,
) -> None:
    """Encode `blocks` (index -> image range) with one loader, handing each block to `sink` when complete (by
    default: saved atomically under `block_dir`): the fast tensor pipeline (`transform`, decoding in
    max(1, num_workers) threads) or the PIL DataLoader."""
    if sink is None:

        def sink(i: int, array: np.ndarray) -> None:
            save_npy_atomic(_block_path(block_dir, i), array)

    encoder = FEATURE_KINDS.get(kind)
    image_transform = getattr(encoder, "image_transform", None)  # augmented views: decoded images, own transform
    device = backbone.device
    order = sorted(blocks)
    batches = [list(blocks[b][s : s + batch_size]) for b in order for s in range(0, len(blocks[b]), batch_size)]
    owner = [b for b in order for _ in range(0, len(blocks[b]), batch_size)]
    if transform is not None and image_transform is None:
        loader = ImageBatches(dataset, transform, batches, device=device, threads=num_workers)
    else:
        loader = contextlib.nullcontext(
            torch.utils.data.DataLoader(
                _Images(dataset, image_transform(backbone) if image_transform else backbone.preprocess),
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
                sink(owner[j], np.concatenate(pending))
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
    precision: str = DEFAULT_EXECUTION.precision,
    batch_size: int = DEFAULT_EXECUTION.batch_size,
    num_workers: int = DEFAULT_EXECUTION.num_workers,
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
    image_transform = getattr(FEATURE_KINDS.get(kind), "image_transform", None)
    if precision not in PRECISIONS:
        raise OodbenchError(f"Unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}.")
    if block_size < 1:
        raise OodbenchError(f"block_size must be at least 1 (got {block_size}).")
    preprocess, transform = preprocess_key(backbone, pipeline)
    if image_transform is not None:  # views are cut from the decoded image by their own transform (PIL)
        preprocess, transform = f"{backbone.preprocess_id} | {image_transform(backbone)!r}", None
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
    progress = progress or Progress(enabled=False)
    blocks = [range(s, min(s + block_size, n)) for s in range(0, n, block_size)]

    def encode(todo: dict[int, range], sink: Callable[[int, np.ndarray], None] | None, task) -> None:
        """Encode `todo`; out of device memory, halve the batch (finished blocks are kept) until it fits."""
        nonlocal batch_size
        while todo:
            try:
                _encode_blocks(
                    backbone,
                    dataset,
                    todo,
                    folder / "blocks",
                    kind=kind,
                    precision=precision,
                    batch_size=batch_size,
                    num_workers=num_workers,
                    progress=task,
                    transform=transform,
                    sink=sink,
                )
                return
            except torch.OutOfMemoryError:
                if batch_size == 1:
                    raise OodbenchError(
                        f"Encoding {dataset.spec.name!r} runs out of device memory even one image at "
                        f"a time; use a device with more memory or --precision bf16."
                    ) from None
                batch_size //= 2
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                warnings.warn(f"Out of device memory; continuing with --batch-size {batch_size}.", stacklevel=3)
                if sink is None:
                    todo = {
                        i: b for i, b in todo.items() if _read_block(_block_path(folder / "blocks", i), len(b)) is None
                    }

    try:
        return _extract_into_cache(folder, key, dataset, blocks, encode, progress=progress, kind=kind)
    except OSError as err:  # the cache is an optimisation: read-only, full or impossible to create
        if world > 1:
            raise OodbenchError(
                f"Cannot write the feature cache {folder} ({err.strerror}); under torchrun the ranks share "
                f"features through it, so pass --cache-dir (or set {CACHE_ENV}) to a writable shared folder."
            ) from None
        warnings.warn(
            f"Cannot write the feature cache {folder} ({err.strerror}); encoding {dataset.spec.name!r} in memory "
            f"for this run only. Pass --cache-dir (or set {CACHE_ENV}) to a writable folder to keep them.",
            stacklevel=2,
        )
    parts: dict[int, np.ndarray] = {}
    with progress.task(f"encode {dataset.spec.name} ({kind}, not cached)", total=n) as task:
        encode(dict(enumerate(blocks)), parts.__setitem__, task)
    array = np.concatenate([parts[i] for i in range(len(blocks))]) if blocks else np.zeros((0,), np.float16)
    return Features(array, False, final)


def _extract_into_cache(
    folder: Path, key: FeatureKey, dataset: LoadedDataset, blocks: list[range], encode, *, progress, kind: str
) -> Features:
    """Encode the missing blocks into the cache (resumable, sharded under torchrun), assemble and load the
    file. Raises OSError when the cache cannot be written."""
    final = folder / "features.npy"
    n = len(dataset)
    rank, world = rank_world()
    if rank == 0 and final.exists():
        warnings.warn(
            f"The feature cache {final} is incomplete or damaged (size, shape or checksum differs from "
            f"its meta.json); encoding {dataset.spec.name!r} again.",
            stacklevel=3,
        )
        final.unlink()
        (folder / "meta.json").unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    barrier()
    block_dir = folder / "blocks"
    mine = {i: blocks[i] for i in range(len(blocks)) if i % world == rank}
    todo = {i: b for i, b in mine.items() if _read_block(_block_path(block_dir, i), len(b)) is None}
    with progress.task(
        f"encode {dataset.spec.name} ({kind})",
        total=sum(map(len, mine.values())),
        completed=sum(len(b) for i, b in mine.items() if i not in todo),
    ) as task:
        encode(todo, None, task)
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


@torch.no_grad()
def class_text_embeddings(model, tokenizer, classnames: list[str], templates: list[str], *, device) -> torch.Tensor:
    """The zero-shot classifier of an open_clip model [C, D] (float32): per class the L2-normalised mean of its
    L2-normalised prompt embeddings. `text_features` caches it for a frozen backbone; methods that tune the
    text encoder call it on their tuned model."""
    rows = []
    for name in classnames:
        tokens = tokenizer([t.format(name) for t in templates]).to(device)
        emb = torch.nn.functional.normalize(model.encode_text(tokens).float(), dim=-1).mean(0)
        rows.append(torch.nn.functional.normalize(emb, dim=-1))
    return torch.stack(rows)


# ---------------------------------------------------------------- `oodbench cache verify`


@dataclass(frozen=True)
class CacheEntry:
    """One thing `verify_cache` looked at: what it is, whether it is intact, and whether it was removed."""

    path: Path
    kind: str  # features | blocks | text | outputs | backbone | site | temporary
    ok: bool
    detail: str = ""
    removed: bool = False


def _check_features(meta_path: Path) -> str | None:
    """Why a cached feature file does not match its meta.json (read in full: sha256 of every byte), or None."""
    meta = json.loads(meta_path.read_text())
    final = meta_path.parent / "features.npy"
    key = FeatureKey(**{f: meta[f] for f in FeatureKey.__dataclass_fields__})
    if key.digest() != meta["digest"]:
        return "meta.json does not describe its own key"
    if not final.exists():
        return "features.npy is missing"
    arr = np.load(final, mmap_mode="r")
    if list(arr.shape) != meta["shape"] or arr.dtype != np.float16:
        return f"shape {list(arr.shape)} {arr.dtype}, meta.json says {meta['shape']} float16"
    if final.stat().st_size != meta["bytes"]:
        return f"{final.stat().st_size} bytes, meta.json says {meta['bytes']}"
    if sha256_file(final) != meta["sha256"]:
        return "its sha256 differs from meta.json's: the file was changed after it was written"
    return None


def _writer_alive(tmp: Path) -> bool:
    """Is the process that is writing the atomic-write temporary file `tmp` (`.<name>.<pid>.<token>.tmp`) alive?"""
    parts = tmp.name.rsplit(".", 3)
    try:
        os.kill(int(parts[-3]), 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def verify_cache(cache_dir: Path, *, repair: bool = True) -> list[CacheEntry]:
    """Check everything in an oodbench cache folder, re-reading every byte, and (with `repair`) remove what is
    damaged so that the next run rebuilds it.

    Loading a feature file checks its size, shape and (only when its modification time changed) its sha256;
    same-size corruption with the time restored passes that check, so this re-hashes every feature file
    against its meta.json (and records the current time of the intact ones). It also reads back the blocks of
    interrupted extractions, the text-feature cache (shape, finite values), the output cache (every array of
    every .npz, whose zip CRC-32 catches bit flips), remembered backbone identities, the site builder's parse
    cache, and removes temporary files whose writer is gone."""
    root = Path(cache_dir)
    found: list[CacheEntry] = []

    def damaged(path: Path, kind: str, detail: str, *remove: Path) -> None:
        if repair:
            for p in remove:
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        found.append(CacheEntry(path, kind, False, detail, removed=repair))

    for meta_path in sorted(root.glob("features/**/meta.json")):
        final = meta_path.parent / "features.npy"
        try:
            problem = _check_features(meta_path)
        except Exception as err:  # noqa: BLE001 - garbled meta.json or .npy header
            problem = f"unreadable ({type(err).__name__}: {err})"
        if problem:
            damaged(final, "features", problem, final, meta_path)
            continue
        found.append(CacheEntry(final, "features", True))
        meta = json.loads(meta_path.read_text())
        if repair and final.stat().st_mtime_ns != meta.get("mtime_ns"):
            with contextlib.suppress(OSError):  # hashed just now: later loads may take the shortcut again
                write_json_atomic(meta_path, {**meta, "mtime_ns": final.stat().st_mtime_ns})
    for final in sorted(root.glob("features/**/features.npy")):
        if not (final.parent / "meta.json").exists():
            damaged(final, "features", "no meta.json: the file was never completed", final)
    for block in sorted(root.glob("features/**/blocks/*.npy")):
        try:
            ok = np.load(block, mmap_mode="r").dtype == np.float16
        except Exception:  # noqa: BLE001 - numpy raises several types for a garbled file
            ok = False
        if ok:
            found.append(
                CacheEntry(block, "blocks", True, "a block of an interrupted extraction (the next run resumes)")
            )
        else:
            damaged(block, "blocks", "unreadable block of an interrupted extraction", block)
    for path in sorted(root.glob("text/*.npy")):
        try:
            arr = np.load(path)
            problem = None if arr.ndim == 2 and np.isfinite(arr).all() else f"shape {arr.shape} or non-finite values"
        except Exception as err:  # noqa: BLE001
            problem = f"unreadable ({type(err).__name__})"
        if problem:
            damaged(path, "text", problem, path)
        else:
            found.append(CacheEntry(path, "text", True))
    for meta_path in sorted(root.glob("outputs/*/*/meta.json")):
        folder = meta_path.parent
        try:
            json.loads(meta_path.read_text())["digest"]
            for npz in sorted(folder.glob("*.npz")):
                with np.load(npz) as z:
                    for name in z.files:
                        z[name]  # reading a member checks its CRC-32
            found.append(CacheEntry(folder, "outputs", True))
        except Exception as err:  # noqa: BLE001 - zipfile, numpy and json raise many types
            damaged(folder, "outputs", f"unreadable ({type(err).__name__}: {err})", folder)
    for path in sorted(root.glob("backbones/*.json")):
        try:
            record = json.loads(path.read_text())
            problem = None if isinstance(record, dict) and "weights_sha256" in record else "not an identity record"
        except Exception as err:  # noqa: BLE001
            problem = f"unreadable ({type(err).__name__})"
        if problem:
            damaged(path, "backbone", problem, path)
        else:
            found.append(CacheEntry(path, "backbone", True))
    for path in sorted(root.glob("site/*.parquet")):
        try:
            import pyarrow.parquet as pq

            pq.read_table(path)
            found.append(CacheEntry(path, "site", True))
        except Exception as err:  # noqa: BLE001
            damaged(path, "site", f"unreadable ({type(err).__name__})", path)
    for tmp in sorted(root.rglob(".*.tmp")):
        if tmp.is_file() and not _writer_alive(tmp):
            damaged(tmp, "temporary", "left by a write that was interrupted", tmp)
    return found


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
    weights = class_text_embeddings(backbone.model, backbone.tokenizer, classnames, templates, device=backbone.device)
    try:
        save_npy_atomic(path, weights.cpu().numpy())
    except OSError as err:  # the cache is an optimisation: a read-only or full disk only costs time next run
        warnings.warn(
            f"Cannot write the text-feature cache {path} ({err.strerror}); continuing without it.", stacklevel=2
        )
    return weights
