"""Dataset specs: frozen, versioned descriptions of image sets, registered by declaration.

Each family lives in its own module (demo, imagenet, ood, fine_grained, ...) and registers its
specs into DATASETS when imported; `load_families()` discovers and imports every module of this
package, so a new family file needs no list to be edited. This layer is pure description: reading
files from a user's data root belongs to benchmark.data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmark.errors import DataError
from benchmark.registry import Registry, import_submodules

PACKAGE_DIR = Path(__file__).parent
CLASSNAMES_DIR = PACKAGE_DIR / "classnames"
LISTS_DIR = PACKAGE_DIR / "lists"
BUNDLED_DIR = PACKAGE_DIR / "demo_data"


@dataclass(frozen=True)
class HubSource:
    """A Hugging Face hub dataset, pinned to a revision (a commit sha)."""

    repo_id: str
    revision: str
    split: str
    config: str | None = None
    image_column: str = "image"
    label_column: str | None = "label"


@dataclass(frozen=True)
class BundledSource:
    """A Parquet file in the HF `datasets` image layout shipped inside this package."""

    file: str  # relative to benchmark/datasets/demo_data/


@dataclass(frozen=True)
class ImageListSource:
    """Images under the user's data root, listed (relative paths, sorted) in a file shipped here.

    Each line of the list is `relative/path.jpg` or `relative/path.jpg<TAB>label`. A spec whose
    `list_sha256` is "" is pinned locally: `oodbench data prepare` enumerates the user's copy with
    `layout` (see benchmark.datacheck) and records the list and its hash under the data root.
    """

    list_file: str  # relative to benchmark/datasets/lists/ (unused by locally pinned specs)
    root: str  # folder under the data root, e.g. "imagenet/val"
    instructions: str = ""  # where to get the images and how to lay them out
    layout: str = "listed"  # how `data prepare` enumerates a copy: a name in benchmark.datacheck.LAYOUTS


Source = HubSource | BundledSource | ImageListSource


UNKNOWN_COUNT = 0  # a locally pinned spec's num_images when the count is not asserted; `data prepare` records it


@dataclass(frozen=True)
class DatasetSpec:
    """One image set. `list_sha256` pins its ordered image list (see benchmark.data.list_hash)."""

    name: str
    version: int
    source: Source
    num_images: int
    list_sha256: str
    classnames: str | None = None  # file under classnames/ (ID sets); None for OOD sets
    license: str = ""
    citation: str = ""
    description: str = ""


def is_shipped(file: str) -> bool:
    """True when the class-name (or wnid) file ships with oodbench."""
    return bool(file) and (CLASSNAMES_DIR / file).is_file()


def read_shipped(file: str) -> list[str]:
    """The non-empty, stripped lines of a class-name (or wnid) file that ships in classnames/. Files that
    cannot ship (written under the data root by `data prepare`) are read by benchmark.data.read_classnames."""
    path = CLASSNAMES_DIR / file
    if not path.is_file():
        raise DataError(f"The class-name file {file!r} does not ship with oodbench (no {path}).")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


DATASETS: Registry[DatasetSpec] = Registry("dataset", list_command="oodbench list datasets")


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    return DATASETS.add(spec.name, spec)


def load_families() -> list[str]:
    """Import every family module of this package (discovered, not listed) so that all specs are registered."""
    return import_submodules(__name__)
