"""Dataset loading: pinned hashes, clear errors for missing or corrupted data."""

from __future__ import annotations

import dataclasses

import pytest

from benchmark.data import list_hash, load_dataset
from benchmark.datasets import DATASETS, BundledSource, load_families
from benchmark.errors import DataError
from benchmark.suites import SUITES


@pytest.fixture(scope="module")
def specs():
    load_families()
    return SUITES.get("fmnist-ood").datasets()


def test_every_bundled_dataset_matches_its_pin(specs):
    counts = {}
    for name, spec in specs.items():
        ds = load_dataset(spec)
        assert len(ds) == spec.num_images
        assert ds.list_sha256 == spec.list_sha256
        counts[name] = len(ds)
        img = ds.get_image(0)
        assert img.mode == "RGB" and img.size == (28, 28)
    id_test = load_dataset(specs["fmnist-id6-test"])
    assert sorted(set(id_test.labels.tolist())) == list(range(6))
    assert set(load_dataset(specs["animal-mnist"]).labels.tolist()) == {-1}
    assert counts == {
        "fmnist-id6-test": 3000,
        "fmnist-id6-pool": 600,
        "fmnist-near4": 2000,
        "animal-mnist": 2000,
        "sklearn-digits": 1797,
        "textiles": 2000,
    }


def test_hash_mismatch_stops_with_a_clear_message(specs):
    spec = dataclasses.replace(specs["textiles"], list_sha256="0" * 64)
    with pytest.raises(DataError, match="does not match its pinned spec") as info:
        load_dataset(spec)
    assert "textiles" in str(info.value) and "restore the pinned copy" in str(info.value)


def test_missing_bundled_file_is_named(specs):
    spec = dataclasses.replace(specs["textiles"], source=BundledSource("no_such_file.parquet"))
    with pytest.raises(DataError, match="no_such_file.parquet"):
        load_dataset(spec)


def test_corrupted_bundled_file_is_named(specs, tmp_path, monkeypatch):
    import benchmark.data as data_mod

    (tmp_path / "textiles.parquet").write_bytes(b"PAR1 this is not parquet")
    monkeypatch.setattr(data_mod, "BUNDLED_DIR", tmp_path)
    with pytest.raises(DataError, match="textiles.parquet"):
        load_dataset(specs["textiles"])


def test_corrupted_image_is_reported_by_name(specs):
    ds = load_dataset(specs["sklearn-digits"])
    ds._bytes = list(ds._bytes)
    ds._bytes[3] = b"\x89PNG garbage"
    with pytest.raises(DataError, match=r"Corrupted image 3 \(digits/00003.png\) of dataset 'sklearn-digits'"):
        ds.get_image(3)


def test_list_hash_depends_on_order_and_labels():
    a = list_hash([("x", 0), ("y", 1)])
    assert a != list_hash([("y", 1), ("x", 0)])
    assert a != list_hash([("x", 0), ("y", 2)])
    assert a == list_hash(iter([("x", 0), ("y", 1)]))


def test_registered_specs_are_frozen_and_versioned():
    load_families()
    for _name, spec in DATASETS.items():
        assert spec.version >= 1
        with pytest.raises(dataclasses.FrozenInstanceError):
            spec.name = "other"  # type: ignore[misc]
