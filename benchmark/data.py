"""Turn a dataset spec into images: HF hub datasets, bundled Parquet files and image lists.

Every loader verifies the spec's pinned `list_sha256` before any image is used. The list hash is
the sha256 of one line per image, in order, `<id>\\t<label>\\n`, where `<id>` is the sha256 of the
image's encoded bytes (hub and bundled sets, whose bytes come with the list) or its relative path
(image lists, whose files live on the user's disk and are checked image by image when read).

Image-list specs whose data cannot be inspected when the spec is written carry `list_sha256 = ""`:
they are pinned locally. `oodbench data prepare` (benchmark.datacheck) enumerates the user's copy,
writes the ordered list under `<data root>/.oodbench/lists/` and its hash, count and content hash
under `<data root>/.oodbench/pins/`; loading then verifies the list against that local pin, and the
hash goes into every result row so that runs on different copies can be told apart.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from benchmark.datasets import (
    BUNDLED_DIR,
    LISTS_DIR,
    BundledSource,
    DatasetSpec,
    HubSource,
    ImageListSource,
    is_shipped,
    read_shipped,
)
from benchmark.errors import DataError

DATA_ROOT_ENV = "OODBENCH_DATA"
STATE_DIR = ".oodbench"  # under the data root: locally pinned lists, pins, class names from the user's copy


def default_data_root() -> Path:
    return Path(os.environ.get(DATA_ROOT_ENV, Path.home() / "oodbench-data")).expanduser()


def is_pinned(spec: DatasetSpec) -> bool:
    """True when the spec itself carries its list hash; False for specs pinned locally by `data prepare`."""
    return bool(spec.list_sha256)


def local_list_path(spec: DatasetSpec, data_root: Path) -> Path:
    return data_root / STATE_DIR / "lists" / f"{spec.name}.v{spec.version}.tsv"


def local_pin_path(spec: DatasetSpec, data_root: Path) -> Path:
    return data_root / STATE_DIR / "pins" / f"{spec.name}.json"


def local_classnames_path(file: str, *, data_root: Path | None = None) -> Path:
    """Where `data prepare` writes class names that cannot ship with oodbench; DataError when absent."""
    path = (data_root or default_data_root()) / STATE_DIR / "classnames" / file
    if not path.exists():
        raise DataError(
            f"Class names {file!r} do not ship with oodbench: they are read from your copy of the dataset. Run "
            f"`oodbench data prepare` for the dataset that uses them (see `oodbench data check SUITE`), which writes "
            f"{path}; set {DATA_ROOT_ENV} (or --data-root) if your data root is elsewhere."
        )
    return path


def read_classnames(file: str, *, data_root: Path | None = None) -> list[str]:
    """Class names (or wnids) from classnames/ when the file ships with oodbench, else from the copy `data
    prepare` recorded under the data root (default: $OODBENCH_DATA or ~/oodbench-data)."""
    if is_shipped(file):
        return read_shipped(file)
    lines = local_classnames_path(file, data_root=data_root).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


def read_local_pin(spec: DatasetSpec, data_root: Path) -> dict:
    """The pin `data prepare` recorded for a locally pinned spec; DataError naming the fix when absent or stale."""
    path = local_pin_path(spec, data_root)
    if not path.exists():
        raise DataError(
            f"Dataset {spec.name!r} is unpinned on this machine: its image list is pinned from your verified copy by "
            f"`oodbench data prepare {spec.name} --from PATH` (no {path}). `oodbench data check` says where to get it."
        )
    try:
        pin = json.loads(path.read_text(encoding="utf-8"))
        pin["list_sha256"], pin["num_images"], pin["version"]  # noqa: B018  the keys every pin has
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(
            f"The local pin {path} of dataset {spec.name!r} is unreadable ({err}); run "
            f"`oodbench data prepare {spec.name} --from PATH` again."
        ) from None
    if pin["version"] != spec.version:
        raise DataError(
            f"Dataset {spec.name!r} was prepared for spec version {pin['version']} but the spec is now "
            f"version {spec.version}; run `oodbench data prepare {spec.name} --from PATH` again."
        )
    return pin


def list_hash(entries: Iterable[tuple[str, int]]) -> str:
    """sha256 of the ordered image list: one `<id>\\t<label>\\n` line per image."""
    h = hashlib.sha256()
    for ident, label in entries:
        h.update(f"{ident}\t{int(label)}\n".encode())
    return h.hexdigest()


@dataclass
class LoadedDataset:
    """The images of one spec, in order, with labels (-1 for OOD sets) and the verified list hash.

    `get(i)` returns encoded bytes (decoded lazily by the feature extractor) and `describe(i)` names
    image i in error messages.
    """

    spec: DatasetSpec
    labels: np.ndarray
    list_sha256: str
    _bytes: list[bytes] | None = None
    _paths: list[Path] | None = None
    _names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def describe(self, i: int) -> str:
        return f"image {i} ({self._names[i]}) of dataset {self.spec.name!r}"

    def get_bytes(self, i: int) -> bytes:
        if self._bytes is not None:
            return self._bytes[i]
        assert self._paths is not None
        try:
            return self._paths[i].read_bytes()
        except OSError as err:
            raise DataError(
                f"Cannot read {self.describe(i)}: {err.strerror}. Check the file exists and is readable."
            ) from None

    def subset(self, indices: np.ndarray, *, tag: str) -> LoadedDataset:
        """Images `indices` of this dataset as a dataset of their own, named `<name>@<tag>`, with a list
        hash derived from this one's, so that features of a few-shot split cache apart from the pool's."""
        idx = [int(i) for i in indices]
        spec = dataclasses.replace(self.spec, name=f"{self.spec.name}@{tag}", num_images=len(idx))
        digest = hashlib.sha256(f"{self.list_sha256}\n{','.join(map(str, idx))}".encode()).hexdigest()
        return LoadedDataset(
            spec=spec,
            labels=self.labels[idx],
            list_sha256=digest,
            _bytes=None if self._bytes is None else [self._bytes[i] for i in idx],
            _paths=None if self._paths is None else [self._paths[i] for i in idx],
            _names=[self._names[i] for i in idx],
        )

    def get_image(self, i: int) -> Image.Image:
        """Decoded RGB image i; a corrupted file is reported by name."""
        try:
            with Image.open(io.BytesIO(self.get_bytes(i))) as im:
                return im.convert("RGB")
        except DataError:
            raise
        except Exception as err:  # PIL raises many types for broken files
            raise DataError(
                f"Corrupted {self.describe(i)}: {err}. Replace the file with a good copy "
                f"(`oodbench data check` lists what is wrong)."
            ) from None


def _verify(spec: DatasetSpec, actual: str, n: int) -> None:
    if n != spec.num_images or actual != spec.list_sha256:
        raise DataError(
            f"Dataset {spec.name!r} (version {spec.version}) does not match its pinned spec: expected "
            f"{spec.num_images} images with list sha256 {spec.list_sha256[:16]}..., found {n} with "
            f"{actual[:16]}.... The data on disk was changed or is a different release; restore the pinned "
            f"copy (see `oodbench data check`) rather than editing the spec."
        )


def _load_hf(ds, spec: DatasetSpec, image_column: str, label_column: str | None) -> LoadedDataset:
    import datasets

    if image_column not in ds.column_names:
        raise DataError(f"Dataset {spec.name!r} has no column {image_column!r} (columns: {ds.column_names}).")
    ds = ds.cast_column(image_column, datasets.Image(decode=False))
    table = ds.data.table if hasattr(ds.data, "table") else ds.data
    images = table.column(image_column).combine_chunks()
    blobs = images.field("bytes").to_pylist()
    paths = images.field("path").to_pylist()
    labels = (
        np.array(table.column(label_column).to_numpy(), dtype=np.int64)  # a writable copy
        if label_column and label_column in ds.column_names
        else np.full(len(blobs), -1, dtype=np.int64)
    )
    missing = [i for i, b in enumerate(blobs) if b is None]
    if missing:
        raise DataError(f"Dataset {spec.name!r}: {len(missing)} rows carry no image bytes (first: row {missing[0]}).")
    ids = (hashlib.sha256(b).hexdigest() for b in blobs)
    actual = list_hash(zip(ids, labels.tolist(), strict=False))
    _verify(spec, actual, len(blobs))
    names = [p or f"row {i}" for i, p in enumerate(paths)]
    return LoadedDataset(spec=spec, labels=labels, list_sha256=actual, _bytes=blobs, _names=names)


def _load_bundled(spec: DatasetSpec, source: BundledSource) -> LoadedDataset:
    import datasets

    path = BUNDLED_DIR / source.file
    if not path.exists():
        raise DataError(
            f"The bundled file {path} of dataset {spec.name!r} is missing. It ships with oodbench; reinstall "
            f"the package or restore it with `git checkout -- {path.name}`."
        )
    import pyarrow.parquet as pq
    from datasets.table import InMemoryTable

    try:  # an in-memory HF Dataset straight from the file: no builder, no copy into the HF cache
        ds = datasets.Dataset(InMemoryTable(pq.read_table(path)))
    except Exception as err:
        raise DataError(
            f"Cannot read the bundled file {path} of dataset {spec.name!r}: {err}. It is corrupted; "
            f"restore it from the repository."
        ) from None
    return _load_hf(ds, spec, "image", "label")


def _load_hub(spec: DatasetSpec, source: HubSource, cache_dir: Path | None) -> LoadedDataset:
    import datasets

    try:
        ds = datasets.load_dataset(
            source.repo_id,
            source.config,
            split=source.split,
            revision=source.revision,
            cache_dir=str(cache_dir) if cache_dir else None,
        )
    except Exception as err:
        raise DataError(
            f"Cannot load dataset {spec.name!r} from the Hugging Face hub ({source.repo_id} at revision "
            f"{source.revision[:12]}): {type(err).__name__}: {err}. It is downloaded on first use, so a "
            f"network (and for "
            f"gated sets `huggingface-cli login`) is needed once; afterwards it loads from the HF cache."
        ) from None
    return _load_hf(ds, spec, source.image_column, source.label_column)


def safe_relative(rel: str, *, where: str) -> PurePosixPath:
    """A relative path from a list that stays inside its root; `..` and absolute paths are refused."""
    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or rel.startswith(("/", "\\")) or ".." in p.parts or ":" in p.parts[0]:
        raise DataError(
            f"{where}: path {rel!r} is not a plain relative path inside the data root "
            f"(absolute paths and '..' are refused)."
        )
    return p


def read_image_list(list_file: Path) -> list[tuple[str, int]]:
    """(relative path, label) pairs of an image list file; label -1 where none is given."""
    if not list_file.exists():
        raise DataError(f"Image list {list_file} is missing; it ships with oodbench, reinstall the package.")
    entries = []
    for n, line in enumerate(list_file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        rel, _, label = line.partition("\t")
        safe_relative(rel, where=f"{list_file} line {n}")
        try:
            entries.append((rel, int(label) if label else -1))
        except ValueError:
            raise DataError(
                f"{list_file} line {n}: label {label!r} is not an integer; lines are `relative/path<TAB>label`."
            ) from None
    return entries


def resolve_list(spec: DatasetSpec, source: ImageListSource, data_root: Path) -> tuple[list[tuple[str, int]], str]:
    """The verified ordered (path, label) list of an image-list spec and its hash: shipped and pinned by the
    spec, or written by `data prepare` and pinned locally."""
    if is_pinned(spec):
        entries = read_image_list(LISTS_DIR / source.list_file)
        actual = list_hash(entries)
        _verify(spec, actual, len(entries))
        return entries, actual
    pin = read_local_pin(spec, data_root)
    list_file = local_list_path(spec, data_root)
    entries = read_image_list(list_file) if list_file.exists() else []
    actual = list_hash(entries)
    if actual != pin["list_sha256"] or len(entries) != pin["num_images"]:
        raise DataError(
            f"The local image list {list_file} of dataset {spec.name!r} no longer matches the pin `data prepare` "
            f"recorded ({pin['num_images']} images, sha256 {pin['list_sha256'][:16]}...; found {len(entries)}, "
            f"{actual[:16]}...). Run `oodbench data prepare {spec.name} --from PATH` again rather than editing it."
        )
    return entries, actual


def _load_list(spec: DatasetSpec, source: ImageListSource, data_root: Path) -> LoadedDataset:
    entries, actual = resolve_list(spec, source, data_root)
    root = data_root / source.root
    if not root.is_dir():
        how = f" {source.instructions}" if source.instructions else ""
        raise DataError(
            f"Dataset {spec.name!r} is not on disk: expected its images under {root}.{how} "
            f"Set {DATA_ROOT_ENV} (or --data-root) if your data lives elsewhere; `oodbench data check` shows "
            "every dataset's state."
        )
    paths = [root / rel for rel, _ in entries]
    labels = np.asarray([lab for _, lab in entries], dtype=np.int64)
    return LoadedDataset(spec=spec, labels=labels, list_sha256=actual, _paths=paths, _names=[str(p) for p in paths])


def load_dataset(
    spec: DatasetSpec, *, data_root: Path | None = None, hf_cache_dir: Path | None = None
) -> LoadedDataset:
    """Load and verify one dataset spec."""
    source = spec.source
    if isinstance(source, BundledSource):
        return _load_bundled(spec, source)
    if isinstance(source, HubSource):
        return _load_hub(spec, source, hf_cache_dir)
    if isinstance(source, ImageListSource):
        return _load_list(spec, source, data_root or default_data_root())
    raise TypeError(f"unknown source type {type(source).__name__}")
