"""The real-scale dataset and suite registry: every spec well-formed, honest about what it pins, its class
names and prompts present, and the suites the issue asks for wired to the right datasets."""

from __future__ import annotations

import json
import re

import pytest

from benchmark.data import is_pinned, list_hash, read_classnames, read_image_list
from benchmark.datacheck import LAYOUTS
from benchmark.datasets import (
    CLASSNAMES_DIR,
    DATASETS,
    LISTS_DIR,
    UNKNOWN_COUNT,
    BundledSource,
    DatasetSpec,
    ImageListSource,
    load_families,
)
from benchmark.errors import DataError, OodbenchError
from benchmark.registry import Registry
from benchmark.suites import SUITES, TEMPLATES_FILE, load_templates

load_families()
LIST_SPECS = [name for name, spec in DATASETS.items() if isinstance(spec.source, ImageListSource)]


@pytest.mark.parametrize("name", LIST_SPECS)
def test_image_list_specs_pin_honestly(name):
    spec = DATASETS.get(name)
    source = spec.source
    assert spec.version >= 1 and spec.num_images >= 0 and spec.citation and spec.license and spec.description
    layout, _, arg = source.layout.partition(":")
    assert layout in LAYOUTS
    if is_pinned(spec):  # a hash in a spec is only ever the hash of a list that ships with it
        assert re.fullmatch(r"[0-9a-f]{64}", spec.list_sha256)
        entries = read_image_list(LISTS_DIR / source.list_file)
        assert list_hash(entries) == spec.list_sha256 and len(entries) == spec.num_images
    else:
        assert spec.list_sha256 == ""
    # a missing dataset's message says where to get it and which command records it
    assert f"oodbench data prepare {name} --from" in source.instructions
    assert not source.root.startswith("/") and ".." not in source.root.split("/")


def test_every_registered_hash_is_well_formed():
    for name, spec in DATASETS.items():
        if isinstance(spec.source, BundledSource):
            assert re.fullmatch(r"[0-9a-f]{64}", spec.list_sha256), name


IMAGENET_SETS = {"imagenet1k": 1000, "imagenet10": 10, "imagenet20": 20, "imagenet100": 100}


@pytest.mark.parametrize("stem,count", IMAGENET_SETS.items())
def test_imagenet_class_lists(stem, count):
    all_wnids = read_classnames("imagenet1k.wnids")
    all_names = read_classnames("imagenet1k.txt")
    assert len(all_wnids) == len(set(all_wnids)) == len(all_names) == 1000
    assert all_wnids == sorted(all_wnids)  # the standard class index is the sorted wnid order
    assert all(re.fullmatch(r"n\d{8}", w) for w in all_wnids)
    wnids, names = read_classnames(f"{stem}.wnids"), read_classnames(f"{stem}.txt")
    assert len(wnids) == len(set(wnids)) == len(names) == count
    assert set(wnids) <= set(all_wnids)
    # the subsets carry MCM's own names (warplane, sailboat, ...; docs/fidelity.md), not ImageNet-1k's
    lookup = dict(zip(all_wnids, all_names, strict=False))
    assert (names == [lookup[w] for w in wnids]) == (stem == "imagenet1k")


def test_imagenet_subsets_and_known_names():
    names = dict(zip(read_classnames("imagenet1k.wnids"), read_classnames("imagenet1k.txt"), strict=False))
    assert names["n01440764"] == "tench" and names["n04552348"] == "military aircraft"
    assert not set(read_classnames("imagenet10.wnids")) & set(read_classnames("imagenet20.wnids"))


@pytest.mark.parametrize("file,count", [("food101.txt", 101), ("oxford-pets37.txt", 37)])
def test_fine_grained_class_names(file, count):
    names = read_classnames(file)
    assert len(names) == len(set(names)) == count
    assert all("_" not in n for n in names)


def test_shipped_class_files_have_no_blank_or_padded_lines():
    for path in CLASSNAMES_DIR.iterdir():
        lines = path.read_text(encoding="utf-8").splitlines()
        assert all(line == line.strip() and line for line in lines), path.name


EXPECTED_SUITES = {
    "imagenet1k-far": ("imagenet1k-val", (), ("inaturalist-ood", "sun-ood", "places-ood", "textures-ood")),
    "imagenet1k-near": ("imagenet1k-val", ("ssb-hard", "ninco", "imagenet-o"), ()),
    "imagenet10-vs-20": ("imagenet10-val", ("imagenet20-val",), ()),
    "imagenet20-vs-10": ("imagenet20-val", ("imagenet10-train",), ()),  # MCM's OOD: ImageNet-10's train split
    "cub200-far": ("cub200-test", (), ("inaturalist-ood", "sun-ood", "places-ood", "textures-ood")),
    "stanford-cars-far": ("stanford-cars-test", (), ("inaturalist-ood", "sun-ood", "places-ood", "textures-ood")),
    "food101-far": ("food101-test", (), ("inaturalist-ood", "sun-ood", "places-ood", "textures-ood")),
    "oxford-pets-far": ("oxford-pets-test", (), ("inaturalist-ood", "sun-ood", "places-ood", "textures-ood")),
}


@pytest.mark.parametrize("name,expected", EXPECTED_SUITES.items())
def test_real_suites(name, expected):
    suite = SUITES.get(name)
    assert (suite.id_test, suite.near, suite.far) == expected
    specs = suite.datasets()
    assert specs[suite.id_test].classnames == specs[suite.pool].classnames == suite.classnames
    assert suite.pool != suite.id_test and suite.version == 2
    assert suite.prompt_templates() == ["a photo of a {}"]  # MCM's prompt, no full stop
    assert [h.version for h in suite.history] == [1] and suite.at(1).change
    for group, ood in suite.ood_sets():
        assert group in ("near", "far") and ood != suite.id_test


def test_every_suite_resolves():
    for name, suite in SUITES.items():
        assert suite.datasets(), name
        load_templates(suite.templates)
        if (CLASSNAMES_DIR / suite.classnames).exists():
            assert read_classnames(suite.classnames)


def test_templates_file():
    table = json.loads(TEMPLATES_FILE.read_text(encoding="utf-8"))
    assert len(table["imagenet80"]) == len(set(table["imagenet80"])) == 80
    for key, templates in table.items():
        assert templates and all(t.count("{}") == 1 for t in templates), key
    with pytest.raises(OodbenchError, match="imagenet80"):
        load_templates("imagenet-80")


def test_counts_that_are_asserted():
    assert DATASETS.get("imagenet1k-val").num_images == 50_000
    assert DATASETS.get("textures-ood").num_images == 5_640
    for name in ("inaturalist-ood", "sun-ood", "places-ood"):
        assert DATASETS.get(name).num_images == 10_000
    assert DATASETS.get("openimage-o").num_images == UNKNOWN_COUNT  # reported counts disagree; left to the pin


def test_temporary_registration_leaves_no_trace():
    reg: Registry[int] = Registry("thing")
    reg.add("kept", 1)
    with reg.temporarily("throwaway", 2) as obj:
        assert obj == 2 and reg.get("throwaway") == 2
        with pytest.raises(OodbenchError, match="registered twice"):
            reg.add("throwaway", 3)
    assert reg.names() == ["kept"]
    with pytest.raises(RuntimeError), reg.temporarily("boom", 4):
        raise RuntimeError
    assert "boom" not in reg
    spec = DatasetSpec(name="zz-temp", version=1, source=BundledSource("x.parquet"), num_images=0, list_sha256="")
    with DATASETS.temporarily(spec.name, spec):
        assert "zz-temp" in DATASETS
    assert "zz-temp" not in DATASETS


def test_class_names_that_cannot_ship_are_read_from_the_given_data_root(tmp_path, monkeypatch):
    from benchmark.data import DATA_ROOT_ENV, STATE_DIR

    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "elsewhere"))  # the explicit root must win
    suite = SUITES.get("cub200-far")
    written = tmp_path / STATE_DIR / "classnames" / suite.classnames
    written.parent.mkdir(parents=True)
    written.write_text("Black footed Albatross\nLaysan Albatross\n")
    assert read_classnames(suite.classnames, data_root=tmp_path) == ["Black footed Albatross", "Laysan Albatross"]
    with pytest.raises(DataError, match="do not ship with oodbench"):
        read_classnames(suite.classnames)
