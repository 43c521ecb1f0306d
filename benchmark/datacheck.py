"""`oodbench data check|prepare`: is each dataset present and pinned; turn a user's copy into the pinned form.

`prepare` never edits the user's copy: it enumerates it with the spec's layout, checks every path stays
inside the copy, decodes every image (a corrupted one is reported by path), hashes the bytes, then links
(or copies) the copy to `<data root>/<source root>` and writes the ordered list, its pin and, where they
cannot ship, the class names under `<data root>/.oodbench/`.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

import benchmark
from benchmark.atomic import atomic_path, write_json_atomic, write_text_atomic
from benchmark.data import (
    STATE_DIR,
    is_pinned,
    list_hash,
    load_dataset,
    local_classnames_path,
    local_list_path,
    local_pin_path,
    read_classnames,
    read_image_list,
    read_local_pin,
    resolve_list,
    safe_relative,
)
from benchmark.datasets import (
    CLASSNAMES_DIR,
    DATASETS,
    LISTS_DIR,
    UNKNOWN_COUNT,
    BundledSource,
    DatasetSpec,
    HubSource,
    ImageListSource,
    is_shipped,
    load_families,
    read_shipped,
)
from benchmark.errors import DataError, OodbenchError, UnknownNameError
from benchmark.registry import Registry, suggest
from benchmark.safewalk import check_listed_inside, files_inside

if TYPE_CHECKING:
    from benchmark.suites import SuiteSpec

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SHOWN_PATHS = 10  # problems listed by path in one message


@dataclass
class Enumerated:
    """What a layout found in a copy: (relative path, label) pairs sorted by path, and class names read from it."""

    entries: list[tuple[str, int]]
    classnames: list[str] | None = None  # written under the data root when the spec's file does not ship
    extra_files: dict[str, str] = field(default_factory=dict)  # further class files to write (e.g. {"x.wnids": text})


Layout = Callable[[Path, DatasetSpec, str, "Path | None"], Enumerated]
LAYOUTS: Registry[Layout] = Registry("layout", list_command="docs/data.md")


# ---------------------------------------------------------------- layouts


def _image_files(folder: Path, *, root: Path | None = None) -> list[Path]:
    """Image files under `folder`; links may not leave the copy `root` (default: `folder`) nor loop."""
    return files_inside(folder, root=root or folder, keep=lambda name: name.lower().endswith(IMAGE_SUFFIXES))


def _rel(path: Path, src: Path) -> str:
    return path.relative_to(src).as_posix()


def _shipped(file: str | None) -> list[str] | None:
    return read_shipped(file) if file and is_shipped(file) else None


def _same_names(found: list[str], shipped: list[str], spec: DatasetSpec) -> None:
    def norm(s: str) -> str:
        return s.replace("_", " ").strip().lower()

    if [norm(s) for s in found] != [norm(s) for s in shipped]:
        diff = sorted(set(map(norm, found)) ^ set(map(norm, shipped)))[:SHOWN_PATHS]
        raise DataError(
            f"The classes in your copy of {spec.name!r} differ from the {len(shipped)} shipped in "
            f"{spec.classnames} (differing: {diff}). Check you passed the right folder and release."
        )


@LAYOUTS.register("images")
def layout_images(src: Path, spec: DatasetSpec, arg: str, class_list: Path | None) -> Enumerated:
    """Every image file under the folder (recursively), unlabelled: OOD sets."""
    return Enumerated(sorted((_rel(p, src), -1) for p in _image_files(src)))


@LAYOUTS.register("class_folders")
def layout_class_folders(src: Path, spec: DatasetSpec, arg: str, class_list: Path | None) -> Enumerated:
    """`<class name>/<image>`: labels follow the sorted folder names, which are also the class names."""
    if not src.is_dir():
        raise DataError(f"{src} is not a folder; pass the folder that holds one folder per class.")
    folders = sorted(d.name for d in src.iterdir() if d.is_dir() and not d.name.startswith("."))
    names = [f.replace("_", " ") for f in folders]
    shipped = _shipped(spec.classnames)
    if shipped is not None:
        _same_names(names, shipped, spec)
    entries = sorted((_rel(p, src), i) for i, f in enumerate(folders) for p in _image_files(src / f, root=src))
    return Enumerated(entries, None if shipped is not None else names)


def _wnids(spec: DatasetSpec, class_list: Path | None) -> tuple[list[str], Enumerated]:
    """The wnids of an ImageNet spec: shipped beside its class names, or read from --class-list."""
    assert spec.classnames is not None
    stem = Path(spec.classnames).stem
    shipped = CLASSNAMES_DIR / f"{stem}.wnids"
    all_wnids = read_shipped("imagenet1k.wnids")
    if shipped.exists():
        return read_shipped(shipped.name), Enumerated([])
    if class_list is None:
        raise DataError(
            f"Dataset {spec.name!r} needs its class list: pass --class-list FILE (one wnid per line, "
            f"as in MCM's class_list.txt); it is recorded under the data root."
        )
    try:
        wnids = [line.split()[0] for line in class_list.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as err:
        raise DataError(f"Cannot read the class list {class_list}: {err.strerror}.") from None
    unknown = [w for w in wnids if w not in all_wnids]
    if unknown or len(set(wnids)) != len(wnids):
        raise DataError(
            f"The class list {class_list} must hold distinct ImageNet-1k wnids, one per line "
            f"(unknown: {unknown[:SHOWN_PATHS]})."
        )
    names = dict(zip(all_wnids, read_shipped("imagenet1k.txt"), strict=False))
    return wnids, Enumerated([], [names[w] for w in wnids], {f"{stem}.wnids": "\n".join(wnids) + "\n"})


def _recorded_class_list(spec: DatasetSpec, data_root: Path, class_list: Path | None) -> Path | None:
    """The class list to use: the one given, or the one an earlier `prepare` recorded under the data root (it is
    passed once per suite, e.g. for imagenet100-val, and reused for imagenet100-train); a different one is refused,
    since it would label the pool and the test split differently."""
    if not spec.classnames or (CLASSNAMES_DIR / f"{Path(spec.classnames).stem}.wnids").exists():
        return class_list
    recorded = data_root / STATE_DIR / "classnames" / f"{Path(spec.classnames).stem}.wnids"
    if not recorded.exists():
        return class_list
    if class_list is None:
        return recorded
    try:
        given = [line.split()[0] for line in class_list.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError:
        return class_list  # _wnids reports the unreadable file
    if given != read_classnames(recorded.name, data_root=data_root):
        raise DataError(
            f"The class list {class_list} differs from {recorded}, recorded by an earlier `data prepare` with "
            f"--class-list; every dataset of a suite must use one list. Drop --class-list to reuse the recorded one, "
            f"or delete {recorded} and prepare each dataset that uses it again."
        )
    return class_list


def _same_as_recorded(spec: DatasetSpec, found: Enumerated, data_root: Path) -> None:
    """Class names read from a copy must equal those an earlier `prepare` wrote for the same file (the other split
    of the dataset, e.g. Stanford Cars' train and test folders): labels are positions in that file."""
    names_file = data_root / STATE_DIR / "classnames" / (spec.classnames or "")
    if found.classnames is None or not spec.classnames or not names_file.is_file():
        return
    if read_classnames(spec.classnames, data_root=data_root) != [n.strip() for n in found.classnames]:
        raise DataError(
            f"The classes of your copy of {spec.name!r} differ from {names_file}, written by an earlier "
            f"`data prepare` of a dataset that shares them: the pool and the test split must have the same "
            f"classes in the same order. Check both come from one release; to replace the classes, delete "
            f"{names_file} and prepare every dataset that uses it again."
        )


@LAYOUTS.register("imagenet")
def layout_imagenet(src: Path, spec: DatasetSpec, arg: str, class_list: Path | None) -> Enumerated:
    """`<wnid>/<image>` for the wnids of the spec's class list, labelled in list order."""
    wnids, found = _wnids(spec, class_list)
    missing = [w for w in wnids if not (src / w).is_dir()]
    if missing:
        raise DataError(
            f"{src} lacks {len(missing)} of the {len(wnids)} class folders of {spec.name!r} "
            f"(first: {missing[:SHOWN_PATHS]}); ImageNet must be sorted into one folder per wnid."
        )
    found.entries = sorted((_rel(p, src), i) for i, w in enumerate(wnids) for p in _image_files(src / w, root=src))
    return found


def _table(path: Path) -> list[list[str]]:
    if not path.exists():
        raise DataError(f"{path} is missing; pass the dataset's top folder as unpacked from its archive.")
    return [
        line.split()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]


@LAYOUTS.register("cub")
def layout_cub(src: Path, spec: DatasetSpec, arg: str, class_list: Path | None) -> Enumerated:
    """CUB_200_2011: images.txt, train_test_split.txt (1 = train), image_class_labels.txt, classes.txt."""
    paths = dict(_table(src / "images.txt"))
    is_train = dict(_table(src / "train_test_split.txt"))
    labels = dict(_table(src / "image_class_labels.txt"))
    classes = [c for _, c in sorted(_table(src / "classes.txt"), key=lambda r: int(r[0]))]
    want = "1" if arg == "train" else "0"
    entries = sorted((f"images/{paths[i]}", int(labels[i]) - 1) for i in paths if is_train.get(i) == want)
    names = [c.split(".", 1)[-1].replace("_", " ") for c in classes]
    return Enumerated(entries, names)


@LAYOUTS.register("food101")
def layout_food101(src: Path, spec: DatasetSpec, arg: str, class_list: Path | None) -> Enumerated:
    """food-101: meta/{train,test}.txt list `class/id`, images at images/class/id.jpg."""
    folders = [n.replace(" ", "_") for n in read_shipped(spec.classnames or "")]
    index = {f: i for i, f in enumerate(folders)}
    entries = []
    for (item,) in (row[:1] for row in _table(src / "meta" / f"{arg}.txt")):
        cls = item.split("/", 1)[0]
        if cls not in index:
            raise DataError(
                f"{src / 'meta' / (arg + '.txt')} names class {cls!r}, which is not among the 101 "
                f"shipped in {spec.classnames}; is this the Food-101 release?"
            )
        entries.append((f"images/{item}.jpg", index[cls]))
    return Enumerated(sorted(entries))


@LAYOUTS.register("pets")
def layout_pets(src: Path, spec: DatasetSpec, arg: str, class_list: Path | None) -> Enumerated:
    """oxford-iiit-pet: annotations/{trainval,test}.txt rows `Breed_Name_123 class_id species breed_id`."""
    shipped = read_shipped(spec.classnames or "")
    entries, seen = [], {}
    for row in _table(src / "annotations" / f"{arg}.txt"):
        stem, label = row[0], int(row[1]) - 1
        seen.setdefault(label, stem.rsplit("_", 1)[0])
        entries.append((f"images/{stem}.jpg", label))
    _same_names([seen.get(i, "?") for i in range(len(shipped))], shipped, spec)
    return Enumerated(sorted(entries))


@LAYOUTS.register("listed")
def layout_listed(src: Path, spec: DatasetSpec, arg: str, class_list: Path | None) -> Enumerated:
    """The image list that ships with the spec (benchmark/datasets/lists/)."""
    assert isinstance(spec.source, ImageListSource)
    return Enumerated(read_image_list(LISTS_DIR / spec.source.list_file))


def enumerate_copy(spec: DatasetSpec, src: Path, *, class_list: Path | None = None) -> Enumerated:
    """The ordered (path, label) list of a user's copy of an image-list spec, every path checked to stay inside."""
    source = spec.source
    if not isinstance(source, ImageListSource):
        raise OodbenchError(
            f"Dataset {spec.name!r} is not read from local files ({type(source).__name__}); nothing to prepare."
        )
    name, _, arg = (source.layout if not is_pinned(spec) else "listed").partition(":")
    found = LAYOUTS.get(name)(src, spec, arg, class_list)
    for rel, _ in found.entries:
        safe_relative(rel, where=f"dataset {spec.name!r}")
    check_listed_inside(src, [rel for rel, _ in found.entries])  # no listed file is a link out of the copy
    return found


# ---------------------------------------------------------------- verifying images


def _check_image(path: Path) -> tuple[str | None, str]:
    """(sha256 of the bytes or None, problem) for one image file: it must exist and decode fully."""
    try:
        blob = path.read_bytes()
    except OSError as err:
        return None, f"{path}: unreadable ({err.strerror})"
    try:
        with Image.open(io.BytesIO(blob)) as im:
            im.load()
    except Exception as err:  # PIL raises many types for broken files
        return None, f"{path}: corrupted ({err})"
    return hashlib.sha256(blob).hexdigest(), ""


def verify_images(root: Path, entries: list[tuple[str, int]], *, workers: int = 0) -> str:
    """Decode every listed image; content sha256 (list_hash over byte hashes and labels), or DataError naming bad
    files."""
    paths = [root / rel for rel, _ in entries]
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        results = list(pool.map(_check_image, paths, chunksize=64))
    problems = [problem for _, problem in results if problem]
    if problems:
        shown = "; ".join(problems[:SHOWN_PATHS]) + (
            f"; and {len(problems) - SHOWN_PATHS} more" if len(problems) > SHOWN_PATHS else ""
        )
        raise DataError(
            f"{len(problems)} of {len(paths)} images are unreadable or corrupted: {shown}. "
            f"Replace them with good copies (re-download or re-extract the archive)."
        )
    return list_hash(zip((digest or "" for digest, _ in results), (label for _, label in entries), strict=False))


# ---------------------------------------------------------------- prepare


def _place(src: Path, dest: Path, entries: Iterable[tuple[str, int]], *, copy: bool) -> str:
    """Make `dest` show the copy at `src`: a symlink (default) or copies of the listed files. Never edits `src`."""
    src = src.resolve()
    if dest.is_symlink() or dest.exists():
        if dest.resolve() == src:
            return f"{dest} already points at {src}"
        if not copy or dest.is_symlink():  # never write through a link into someone else's copy
            raise DataError(
                f"{dest} already exists and is not {src}. Remove it (or the link) to use this copy, "
                f"or pass --copy to copy the listed files into it, or use another --data-root."
            )
    if not copy:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.symlink_to(src, target_is_directory=True)
        return f"linked {dest} -> {src}"
    n = 0
    for rel, _ in entries:
        target = dest / rel
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            shutil.copyfile(src / rel, tmp)
        n += 1
    return f"copied {n} files into {dest}"


@dataclass
class Prepared:
    spec: DatasetSpec
    num_images: int
    list_sha256: str
    content_sha256: str
    notes: list[str]


def prepare_dataset(
    spec: DatasetSpec,
    src: Path,
    *,
    data_root: Path,
    copy: bool = False,
    accept_count: bool = False,
    class_list: Path | None = None,
    workers: int = 0,
) -> Prepared:
    """Verify a user's copy of one image-list dataset and record it in the pinned form under `data_root`."""
    source = spec.source
    if not isinstance(source, ImageListSource):
        raise OodbenchError(
            f"Dataset {spec.name!r} is {type(source).__name__.replace('Source', '').lower()}: it needs "
            f"no preparing (`oodbench data check` verifies it)."
        )
    src = src.expanduser()
    if not src.is_dir():
        raise DataError(f"--from {src} is not a folder. {source.instructions}")
    class_list = _recorded_class_list(spec, data_root, class_list)
    found = enumerate_copy(spec, src, class_list=class_list)
    _same_as_recorded(spec, found, data_root)
    n = len(found.entries)
    if n == 0:
        raise DataError(f"No images of {spec.name!r} found under {src}. {source.instructions}")
    notes = []
    if spec.num_images != UNKNOWN_COUNT and n != spec.num_images:
        if not accept_count:
            raise DataError(
                f"Your copy of {spec.name!r} has {n} images; the spec expects {spec.num_images}. Check it "
                f"is the complete, official release; if your release differs on purpose, pass --accept-count "
                f"(the pin then records {n} and `data check` keeps saying so)."
            )
        notes.append(f"count {n} differs from the spec's {spec.num_images} (accepted)")
    missing = [rel for rel, _ in found.entries if not (src / rel).is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} listed images of {spec.name!r} are not under {src} "
            f"(first: {missing[:SHOWN_PATHS]}). {source.instructions}"
        )
    content = verify_images(src, found.entries, workers=workers)
    digest = list_hash(found.entries)
    notes.append(_place(src, data_root / source.root, found.entries, copy=copy))
    state = data_root / STATE_DIR
    if found.classnames is not None and spec.classnames:
        names_file = state / "classnames" / spec.classnames
        write_text_atomic(names_file, "\n".join(found.classnames) + "\n")
        notes.append(f"wrote class names {names_file}")
    for file, text in found.extra_files.items():
        write_text_atomic(state / "classnames" / file, text)
    if not is_pinned(spec):
        write_text_atomic(local_list_path(spec, data_root), "".join(f"{rel}\t{lab}\n" for rel, lab in found.entries))
    write_json_atomic(
        local_pin_path(spec, data_root),
        {
            "dataset": spec.name,
            "version": spec.version,
            "num_images": n,
            "list_sha256": digest,
            "content_sha256": content,
            "spec_num_images": spec.num_images,
            "pinned_by": "spec" if is_pinned(spec) else "local",
            "prepared_from": str(src.resolve()),
            "prepared_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "oodbench_version": benchmark.__version__,
        },
    )
    return Prepared(spec, n, digest, content, notes)


def require_prepared(name: str, *, source: Path, prepared: int, skipped: list[tuple[DatasetSpec, Path]]) -> None:
    """DataError when a suite's `data prepare` found none of its datasets: a run that pins nothing is a mistake
    (usually --from points at the wrong folder), not a success."""
    if prepared or not skipped:
        return
    expected = "; ".join(f"{spec.name} at {where}" for spec, where in skipped)
    raise DataError(
        f"Nothing was prepared: none of the {len(skipped)} local datasets of {name} is under {source}. For a "
        f"suite, --from must be laid out like the data root, each dataset in its folder: {expected}. To prepare "
        f"one dataset from a folder of its own, name the dataset: `oodbench data prepare DATASET --from FOLDER`."
    )


# ---------------------------------------------------------------- check


@dataclass
class DatasetStatus:
    """One dataset's state: ok, missing, unpinned, incomplete, mismatch, corrupted or remote."""

    name: str
    state: str
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.state in ("ok", "remote")


def check_dataset(spec: DatasetSpec, *, data_root: Path, verify: bool = False, workers: int = 0) -> DatasetStatus:
    """Is the dataset present, complete and equal to its pin? For a missing one: where to get it and where to put it."""
    source = spec.source
    if isinstance(source, HubSource):
        return DatasetStatus(
            spec.name,
            "remote",
            f"Hugging Face {source.repo_id} @ {source.revision[:12]}; downloaded "
            f"on first use and verified against its pin when loaded",
        )
    if isinstance(source, BundledSource):
        try:
            load_dataset(spec)
        except DataError as err:
            return DatasetStatus(spec.name, "mismatch", str(err), "reinstall oodbench")
        return DatasetStatus(spec.name, "ok", f"bundled, pinned by the spec ({spec.list_sha256[:12]})")
    assert isinstance(source, ImageListSource)
    root = data_root / source.root
    prepare = f"oodbench data prepare {spec.name} --from /path/to/your/copy --data-root {data_root}"
    where = f"For this data root: `{prepare}` links your copy (wherever it lives) to {root}."
    if not root.is_dir():
        return DatasetStatus(spec.name, "missing", f"nothing at {root}", f"{source.instructions} {where}".strip())
    try:
        entries, digest = resolve_list(spec, source, data_root)
    except DataError as err:
        state = "unpinned" if not is_pinned(spec) and not local_pin_path(spec, data_root).exists() else "mismatch"
        return DatasetStatus(
            spec.name,
            state,
            str(err),
            f"`oodbench data prepare {spec.name} --from {root.resolve()} --data-root {data_root}`",
        )
    missing = [rel for rel, _ in entries if not (root / rel).is_file()]
    if missing:
        return DatasetStatus(
            spec.name,
            "incomplete",
            f"{len(missing)} of {len(entries)} listed images are not under {root} (first: {missing[:SHOWN_PATHS]})",
            f"{source.instructions} {where}".strip(),
        )
    pin = read_local_pin(spec, data_root) if local_pin_path(spec, data_root).exists() else {}
    pinned_by = "the spec" if is_pinned(spec) else "this machine (`data prepare`)"
    detail = f"{len(entries)} images, list sha256 {digest[:12]} pinned by {pinned_by}"
    if spec.num_images not in (UNKNOWN_COUNT, len(entries)):
        detail += f"; the spec expects {spec.num_images} (accepted at prepare)"
    if verify:
        try:
            content = verify_images(root, entries, workers=workers)
        except DataError as err:
            return DatasetStatus(spec.name, "corrupted", str(err), f"replace the named files, then `{prepare}`")
        if pin.get("content_sha256") not in (None, content):
            return DatasetStatus(
                spec.name,
                "mismatch",
                f"image bytes changed since `data prepare` (content sha256 "
                f"{content[:12]}, pinned {pin['content_sha256'][:12]})",
                f"restore the prepared copy, or re-run `{prepare}` if the change is intended",
            )
        detail += f", every image decodes, content sha256 {content[:12]}"
    return DatasetStatus(spec.name, "ok", detail)


def check_classnames(suite: SuiteSpec, *, data_root: Path) -> DatasetStatus | None:
    """A status row when a suite's class names are not available yet (they come from the user's copy)."""
    if (CLASSNAMES_DIR / suite.classnames).exists():
        return None
    try:
        local_classnames_path(suite.classnames, data_root=data_root)
    except DataError as err:
        return DatasetStatus(
            f"class names {suite.classnames}",
            "missing",
            str(err),
            f"`oodbench data prepare {suite.id_test} --from /path/to/your/copy --data-root {data_root}` writes them",
        )
    return None


def resolve_targets(name: str) -> tuple[list[DatasetSpec], SuiteSpec | None]:
    """A suite's datasets and the suite, or one dataset and None, by name."""
    from benchmark.suites import SUITES

    load_families()
    if name in SUITES:
        suite = SUITES.get(name)
        return list(suite.datasets().values()), suite
    if name in DATASETS:
        return [DATASETS.get(name)], None
    raise UnknownNameError(
        f"{name!r} is neither a suite nor a dataset.{suggest(name, SUITES.names() + DATASETS.names())} "
        f"`oodbench list suites` and `oodbench list datasets` show them."
    )
