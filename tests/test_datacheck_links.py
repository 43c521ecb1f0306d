"""`data prepare` against symlinks that leave the copy or loop, and against a suite tree where nothing matches."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.datacheck import prepare_dataset
from benchmark.datasets import UNKNOWN_COUNT, DatasetSpec, ImageListSource
from benchmark.errors import DataError


def write_png(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="PNG")
    return path


def ood_spec(layout: str = "images") -> DatasetSpec:
    """An unpinned, unlabelled OOD set enumerated from the user's copy (like iNaturalist or SUN)."""
    return DatasetSpec(
        name="tiny-links-ood",
        version=1,
        source=ImageListSource(list_file="unused.tsv", root="ood/tiny", layout=layout, instructions="Make it."),
        num_images=UNKNOWN_COUNT,
        list_sha256="",
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A user's copy with two images, and a folder of 80 images beside it (outside the copy)."""
    root = tmp_path / "copy"
    write_png(root / "a" / "one.png", 1)
    write_png(root / "a" / "two.png", 2)
    for k in range(80):
        write_png(tmp_path / "outside" / f"x{k}.png", 100 + k)
    return root


def _prepare(src: Path, tmp_path: Path, spec: DatasetSpec | None = None):
    return prepare_dataset(spec or ood_spec(), src, data_root=tmp_path / "data-root")


def test_a_file_link_out_of_the_copy_is_refused(copy, tmp_path):
    link = copy / "a" / "three.png"
    link.symlink_to(tmp_path / "outside" / "x0.png")
    with pytest.raises(DataError) as err:
        _prepare(copy, tmp_path)
    assert str(link) in str(err.value) and str(tmp_path / "outside" / "x0.png") in str(err.value)
    assert "outside" in str(err.value)


def test_a_folder_link_out_of_the_copy_is_refused(copy, tmp_path):
    link = copy / "more"
    link.symlink_to(tmp_path / "outside", target_is_directory=True)
    with pytest.raises(DataError) as err:  # today: 82 images pinned instead of 2
        _prepare(copy, tmp_path)
    assert str(link) in str(err.value) and str(tmp_path / "outside") in str(err.value)


def test_a_link_out_of_the_copy_in_a_listed_layout_is_refused(tmp_path):
    """CUB-style layouts read paths from text files; a listed image that is a link out of the copy is refused."""
    src = tmp_path / "CUB_200_2011"
    write_png(src / "images" / "001.Bird" / "a.png", 1)
    (src / "images" / "001.Bird" / "b.png").symlink_to(write_png(tmp_path / "outside" / "b.png", 2))
    (src / "images.txt").write_text("1 001.Bird/a.png\n2 001.Bird/b.png\n")
    (src / "train_test_split.txt").write_text("1 1\n2 1\n")
    (src / "image_class_labels.txt").write_text("1 1\n2 1\n")
    (src / "classes.txt").write_text("1 001.Bird\n")
    with pytest.raises(DataError, match="outside"):
        _prepare(src, tmp_path, ood_spec("cub:train"))


@pytest.mark.parametrize("target", ["..", ".", "../.."])
def test_a_symlink_loop_is_refused(copy, tmp_path, target):
    link = copy / "a" / "loop"
    link.symlink_to(target, target_is_directory=True)
    if target == "../..":  # leaves the copy altogether
        match = "outside"
    else:
        match = "loop"
    with pytest.raises(DataError, match=match) as err:
        _prepare(copy, tmp_path)
    assert str(link) in str(err.value)


def test_a_loop_through_two_links_is_refused(copy, tmp_path):
    write_png(copy / "b" / "three.png", 3)
    (copy / "a" / "to-b").symlink_to(Path("..") / "b", target_is_directory=True)
    (copy / "b" / "to-a").symlink_to(Path("..") / "a", target_is_directory=True)
    with pytest.raises(DataError, match="loop"):
        _prepare(copy, tmp_path)


def test_links_inside_the_copy_are_allowed(copy, tmp_path):
    (copy / "b").symlink_to("a", target_is_directory=True)  # a sibling folder shown twice
    (copy / "alias.png").symlink_to(Path("a") / "one.png")
    done = _prepare(copy, tmp_path)
    assert done.num_images == 5  # a/one, a/two, b/one, b/two, alias


def test_a_copy_passed_through_a_link_is_fine(copy, tmp_path):
    link = tmp_path / "copy-link"
    link.symlink_to(copy, target_is_directory=True)
    assert _prepare(link, tmp_path).num_images == 2


# ---------------------------------------------------------------- a suite where nothing matches


def test_preparing_a_suite_where_nothing_matches_fails(run_cli, tmp_path):
    tree = tmp_path / "tree"
    (tree / "unrelated").mkdir(parents=True)
    code, out, err = run_cli("data", "prepare", "imagenet1k-far", "--from", tree, "--data-root", tmp_path / "dr")
    assert code != 0, out
    message = " ".join(err.split())  # the message is wrapped to the terminal's width
    assert "nothing was prepared" in message.lower()
    assert str(tree / "imagenet" / "val") in message and str(tree / "ood" / "iNaturalist") in message
    assert not (tmp_path / "dr").exists()


def test_preparing_a_suite_where_some_datasets_match_succeeds(run_cli, tmp_path):
    tree = tmp_path / "tree"
    write_png(tree / "ood" / "SUN" / "a.png", 1)
    code, out, err = run_cli(
        "data", "prepare", "imagenet1k-far", "--from", tree, "--data-root", tmp_path / "dr", "--accept-count"
    )
    assert code == 0, err
    assert "prepared sun-ood: 1 images" in " ".join(out.split())
    assert os.path.realpath(tmp_path / "dr" / "ood" / "SUN") == str((tree / "ood" / "SUN").resolve())
