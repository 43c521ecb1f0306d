"""`oodbench data check|prepare` on a small ImageNet-like folder generated here: pins, missing-data
instructions, path escapes, corrupted images, and that the user's copy is never edited."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import benchmark.data as data_mod
import benchmark.datacheck as datacheck_mod
from benchmark.cli import app
from benchmark.data import list_hash, load_dataset, local_list_path, local_pin_path, read_classnames, read_image_list
from benchmark.datacheck import check_dataset, prepare_dataset
from benchmark.datasets import DATASETS, DatasetSpec, ImageListSource
from benchmark.errors import DataError
from benchmark.suites import SUITES, SuiteSpec

IMAGENET10_WNIDS = read_classnames("imagenet10.wnids")
PER_CLASS = 2


def write_jpeg(path: Path, seed: int, size: int = 16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)


def make_imagenet_like(folder: Path, wnids: list[str], per_class: int = PER_CLASS) -> Path:
    """`folder/<wnid>/<wnid>_<k>.JPEG`, tiny random JPEGs, plus a stray file that is not an image."""
    for c, wnid in enumerate(wnids):
        for k in range(per_class):
            write_jpeg(folder / wnid / f"{wnid}_{k}.JPEG", seed=100 * c + k)
    (folder / "README.txt").write_text("not an image")
    return folder


def imagenet_spec(
    name: str = "tiny-imagenet10-val",
    *,
    num_images: int = 10 * PER_CLASS,
    list_sha256: str = "",
    layout: str = "imagenet",
    classnames: str = "imagenet10.txt",
    list_file: str = "tiny.tsv",
) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        version=1,
        source=ImageListSource(
            list_file=list_file,
            root="imagenet/val",
            layout=layout,
            instructions="Get the tiny set from the test fixture.",
        ),
        num_images=num_images,
        list_sha256=list_sha256,
        classnames=classnames,
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    return make_imagenet_like(tmp_path / "user-copy" / "val", IMAGENET10_WNIDS)


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    return tmp_path / "data-root"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_missing_dataset_says_where_to_get_it_and_where_to_put_it(data_root):
    status = check_dataset(imagenet_spec(), data_root=data_root)
    assert status.state == "missing" and not status.ok
    assert str(data_root / "imagenet" / "val") in status.detail + status.fix
    assert "Get the tiny set from the test fixture." in status.fix
    assert "oodbench data prepare tiny-imagenet10-val --from" in status.fix


def test_prepare_pins_the_copy_without_editing_it(copy, data_root):
    spec = imagenet_spec()
    before = _snapshot(copy)
    done = prepare_dataset(spec, copy, data_root=data_root)
    assert _snapshot(copy) == before  # originals untouched, nothing added
    assert (data_root / "imagenet" / "val").resolve() == copy.resolve()
    entries = read_image_list(local_list_path(spec, data_root))
    assert len(entries) == done.num_images == 10 * PER_CLASS
    assert [rel for rel, _ in entries] == sorted(rel for rel, _ in entries)
    for rel, label in entries:  # labelled in the order of the shipped ImageNet-10 wnid list
        assert rel.split("/")[0] == IMAGENET10_WNIDS[label]
    pin = json.loads(local_pin_path(spec, data_root).read_text())
    assert pin["list_sha256"] == list_hash(entries) == done.list_sha256 and pin["num_images"] == 20
    assert pin["pinned_by"] == "local" and len(pin["content_sha256"]) == 64

    status = check_dataset(spec, data_root=data_root, verify=True)
    assert status.state == "ok", status.detail
    ds = load_dataset(spec, data_root=data_root)
    assert ds.list_sha256 == pin["list_sha256"] and ds.get_image(3).size == (16, 16)
    assert prepare_dataset(spec, copy, data_root=data_root).list_sha256 == done.list_sha256  # idempotent


def test_unpinned_data_is_reported_as_unpinned(copy, data_root):
    spec = imagenet_spec()
    (data_root / "imagenet").mkdir(parents=True)
    (data_root / "imagenet" / "val").symlink_to(copy)
    status = check_dataset(spec, data_root=data_root)
    assert status.state == "unpinned" and "data prepare tiny-imagenet10-val" in status.fix
    with pytest.raises(DataError, match="unpinned on this machine"):
        load_dataset(spec, data_root=data_root)


def test_edited_local_list_and_changed_images_are_caught(copy, data_root):
    spec = imagenet_spec()
    prepare_dataset(spec, copy, data_root=data_root)
    victim = copy / IMAGENET10_WNIDS[0] / f"{IMAGENET10_WNIDS[0]}_0.JPEG"
    write_jpeg(victim, seed=999)  # a different but valid image
    status = check_dataset(spec, data_root=data_root, verify=True)
    assert status.state == "mismatch" and "changed since `data prepare`" in status.detail

    listed = local_list_path(spec, data_root)
    listed.write_text("".join(line + "\n" for line in listed.read_text().splitlines()[1:]))  # drop one image
    with pytest.raises(DataError, match="no longer matches the pin"):
        load_dataset(spec, data_root=data_root)
    assert check_dataset(spec, data_root=data_root).state == "mismatch"


def test_wrong_count_needs_accept_count(copy, data_root):
    spec = imagenet_spec(num_images=50)
    with pytest.raises(DataError, match="has 20 images; the spec expects 50.*--accept-count"):
        prepare_dataset(spec, copy, data_root=data_root)
    done = prepare_dataset(spec, copy, data_root=data_root, accept_count=True)
    assert any("differs from the spec's 50" in note for note in done.notes)
    assert "the spec expects 50" in check_dataset(spec, data_root=data_root).detail


def test_missing_class_folder_is_named(copy, data_root):
    for p in (copy / IMAGENET10_WNIDS[4]).iterdir():
        p.unlink()
    (copy / IMAGENET10_WNIDS[4]).rmdir()
    with pytest.raises(DataError, match=IMAGENET10_WNIDS[4]):
        prepare_dataset(imagenet_spec(), copy, data_root=data_root)


def test_corrupted_image_is_reported_by_path(copy, data_root):
    spec = imagenet_spec()
    bad = copy / IMAGENET10_WNIDS[2] / f"{IMAGENET10_WNIDS[2]}_1.JPEG"
    blob = bad.read_bytes()
    bad.write_bytes(blob[: len(blob) // 2])  # truncated JPEG
    with pytest.raises(DataError, match="1 of 20 images are unreadable or corrupted") as info:
        prepare_dataset(spec, copy, data_root=data_root)
    assert str(bad) in str(info.value)
    assert not local_pin_path(spec, data_root).exists()  # nothing recorded for a broken copy

    bad.write_bytes(blob)
    prepare_dataset(spec, copy, data_root=data_root)
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    status = check_dataset(spec, data_root=data_root, verify=True)
    assert status.state == "corrupted" and str(data_root / "imagenet" / "val" / bad.relative_to(copy)) in status.detail
    ds = load_dataset(spec, data_root=data_root)
    index = next(i for i, n in enumerate(ds._names) if n.endswith(bad.name))
    with pytest.raises(DataError, match=f"Corrupted image {index} .*{bad.name}"):
        ds.get_image(index)


@pytest.mark.parametrize("escape", ["../outside.JPEG", "/etc/hostname", "a/../../outside.JPEG"])
def test_list_paths_may_not_escape_the_data_root(escape, tmp_path, data_root, monkeypatch):
    lists = tmp_path / "lists"
    lists.mkdir()
    entries = [(f"{IMAGENET10_WNIDS[0]}/{IMAGENET10_WNIDS[0]}_0.JPEG", 0), (escape, 0)]
    (lists / "escape.tsv").write_text("".join(f"{rel}\t{lab}\n" for rel, lab in entries))
    monkeypatch.setattr(data_mod, "LISTS_DIR", lists)
    monkeypatch.setattr(datacheck_mod, "LISTS_DIR", lists)
    spec = imagenet_spec(list_file="escape.tsv", layout="listed", num_images=2, list_sha256=list_hash(entries))
    with pytest.raises(DataError, match="not a plain relative path inside the data root"):
        load_dataset(spec, data_root=data_root)
    with pytest.raises(DataError, match="not a plain relative path"):
        prepare_dataset(spec, tmp_path, data_root=data_root)


def test_shipped_list_is_checked_against_the_spec_hash(copy, tmp_path, data_root, monkeypatch):
    lists = tmp_path / "lists"
    lists.mkdir()
    entries = sorted((f"{w}/{w}_{k}.JPEG", c) for c, w in enumerate(IMAGENET10_WNIDS) for k in range(PER_CLASS))
    (lists / "tiny.tsv").write_text("".join(f"{rel}\t{lab}\n" for rel, lab in entries))
    monkeypatch.setattr(data_mod, "LISTS_DIR", lists)
    monkeypatch.setattr(datacheck_mod, "LISTS_DIR", lists)
    spec = imagenet_spec(layout="listed", list_sha256=list_hash(entries))
    prepare_dataset(spec, copy, data_root=data_root)
    status = check_dataset(spec, data_root=data_root)
    assert status.state == "ok" and "pinned by the spec" in status.detail
    assert not local_list_path(spec, data_root).exists()  # the shipped list is the list

    wrong = dataclasses.replace(spec, list_sha256="0" * 64)
    with pytest.raises(DataError, match="does not match its pinned spec"):
        load_dataset(wrong, data_root=data_root)
    assert check_dataset(wrong, data_root=data_root).state == "mismatch"
    (copy / entries[5][0]).unlink()
    status = check_dataset(spec, data_root=data_root)
    assert status.state == "incomplete" and entries[5][0] in status.detail


def test_another_copy_at_the_root_is_not_replaced(copy, tmp_path, data_root):
    other = make_imagenet_like(tmp_path / "other" / "val", IMAGENET10_WNIDS, per_class=1)
    prepare_dataset(imagenet_spec(num_images=10), other, data_root=data_root)
    with pytest.raises(DataError, match="already exists and is not"):
        prepare_dataset(imagenet_spec(), copy, data_root=data_root)


def test_copy_mode_copies_listed_files(copy, data_root):
    spec = imagenet_spec()
    prepare_dataset(spec, copy, data_root=data_root, copy=True)
    root = data_root / "imagenet" / "val"
    assert not root.is_symlink() and not (root / "README.txt").exists()
    assert _snapshot(root) == {k: v for k, v in _snapshot(copy).items() if k != "README.txt"}
    assert check_dataset(spec, data_root=data_root, verify=True).state == "ok"


def test_class_list_for_names_that_do_not_ship(tmp_path, data_root, monkeypatch):
    wnids = ["n01440764", "n02102040", "n03000684"]
    copy = make_imagenet_like(tmp_path / "val3", wnids + ["n09999999"])  # an extra class folder is ignored
    spec = imagenet_spec(name="tiny-in3", num_images=6, classnames="tiny-in3.txt")
    with pytest.raises(DataError, match="--class-list"):
        prepare_dataset(spec, copy, data_root=data_root)
    class_list = tmp_path / "class_list.txt"
    class_list.write_text("\n".join(wnids) + "\n")
    prepare_dataset(spec, copy, data_root=data_root, class_list=class_list)
    monkeypatch.setenv(data_mod.DATA_ROOT_ENV, str(data_root))
    assert read_classnames("tiny-in3.txt") == ["tench", "English Springer Spaniel", "chainsaw"]
    assert set(load_dataset(spec, data_root=data_root).labels.tolist()) == {0, 1, 2}
    # the list is passed once: the other split of the same classes reuses it, and another list is refused
    train = imagenet_spec(name="tiny-in3-train", num_images=6, classnames="tiny-in3.txt")
    assert prepare_dataset(train, copy, data_root=data_root).num_images == 6
    other = tmp_path / "other.txt"
    other.write_text("\n".join(reversed(wnids)) + "\n")
    with pytest.raises(DataError, match="differs from"):
        prepare_dataset(train, copy, data_root=data_root, class_list=other)
    monkeypatch.setenv(data_mod.DATA_ROOT_ENV, str(tmp_path / "elsewhere"))
    with pytest.raises(DataError, match="do not ship with oodbench.*oodbench data prepare"):
        read_classnames("tiny-in3.txt")


@pytest.fixture
def tiny_suite():
    spec = imagenet_spec()
    suite = SuiteSpec(
        name="tiny-imagenet10",
        version=1,
        id_test=spec.name,
        pool=spec.name,
        near=(),
        far=("textiles",),
        classnames="imagenet10.txt",
        templates="simple",
        family="imagenet",
    )
    with DATASETS.temporarily(spec.name, spec), SUITES.temporarily(suite.name, suite):
        yield suite
    assert spec.name not in DATASETS and suite.name not in SUITES


def test_cli_check_and_prepare(tiny_suite, copy, data_root):
    runner = CliRunner()
    res = runner.invoke(app, ["data", "check", "tiny-imagenet10", "--data-root", str(data_root)])
    assert res.exit_code == 1, res.output
    assert "missing" in res.output and "textiles" in res.output and "Get the tiny set" in res.output
    res = runner.invoke(
        app, ["data", "prepare", "tiny-imagenet10-val", "--from", str(copy), "--data-root", str(data_root)]
    )
    assert res.exit_code == 0, res.output
    assert "prepared tiny-imagenet10-val: 20 images" in res.output
    res = runner.invoke(app, ["data", "check", "tiny-imagenet10", "--data-root", str(data_root), "--verify-images"])
    assert res.exit_code == 0, res.output
    assert "present and match their pins" in res.output


def test_cli_prepares_a_whole_suite_from_a_tree(tiny_suite, tmp_path, data_root):
    tree = tmp_path / "tree"
    make_imagenet_like(tree / "imagenet" / "val", IMAGENET10_WNIDS)  # laid out like the data root
    res = CliRunner().invoke(
        app, ["data", "prepare", "tiny-imagenet10", "--from", str(tree), "--data-root", str(data_root)]
    )
    assert res.exit_code == 0, res.output
    assert res.output.count("prepared tiny-imagenet10-val") == 1  # ID test and pool are the same spec here
    assert (data_root / "imagenet" / "val").resolve() == (tree / "imagenet" / "val").resolve()
    res = CliRunner().invoke(app, ["data", "prepare", "no-such-suite", "--from", str(tree)])
    assert res.exit_code != 0 and "neither a suite nor a dataset" in str(res.exception)
