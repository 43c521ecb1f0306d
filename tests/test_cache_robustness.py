"""The caches against damage and full or read-only disks (issue 14 items 16 and 17).

Item 16: a run's load of a feature file checks size and shape, and re-hashes only when the modification time
changed (docs/scale-out.md says so); `oodbench cache verify` re-hashes everything and removes what is damaged.
Item 17: the cache is an optimisation: a cache folder that cannot be created, or that became read-only after the
features were cached, costs warnings and time, never the result file.
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import shutil
import stat
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from benchmark.config import Execution, RunKey
from benchmark.features import FeatureKey, _load_final, verify_cache
from benchmark.results import read_results, validate_file

DEMO = "oodbench-tiny-fmnist:demo"
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


@pytest.fixture
def cache(tmp_path, demo_run) -> Path:
    """A private copy of the demo run's cache (features, text features, outputs, backbone identity)."""
    copy = tmp_path / "cache"
    shutil.copytree(demo_run["cache_dir"], copy)
    return copy


def _feature_file(cache: Path, dataset: str = "textiles") -> Path:
    return next(cache.glob(f"features/*/{dataset}/global-*/features.npy"))


def _flip_keeping_size_and_mtime(path: Path) -> None:
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40  # a bit in the last feature values: same size
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


@contextmanager
def read_only(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`folder` becomes read-only. Without root, by its permission bits. As root (who ignores them), writes
    under `folder` are refused with EROFS where Python reaches the OS: opening for writing, creating, renaming
    and removing files and folders, as a read-only mount would."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for p in modes:
            p.chmod(modes[p] & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    root = str(folder.resolve())

    def inside(path: object) -> bool:
        try:
            p = os.fsdecode(os.fspath(path))
        except TypeError:
            return False
        return os.path.abspath(p) == root or os.path.abspath(p).startswith(root + os.sep)

    def refuse(path: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", os.fsdecode(os.fspath(path)))

    real_open, real_os_open = io.open, os.open

    def open_(file, mode="r", *args, **kwargs):
        if not isinstance(file, int) and inside(file) and any(c in mode for c in "wax+"):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def os_open(path, flags, *args, **kwargs):
        if kwargs.get("dir_fd") is None and inside(path) and flags & WRITE_FLAGS:
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(io, "open", open_)
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(os, "open", os_open)
    for name in ("mkdir", "rename", "replace", "unlink", "remove", "rmdir", "link"):
        real = getattr(os, name)

        def refused(*args, _real=real, **kwargs):
            if any(inside(a) for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))):
                refuse(args[0])
            return _real(*args, **kwargs)

        monkeypatch.setattr(os, name, refused)
    yield


def _run(cache_dir: Path, out: Path, **execution):
    from benchmark.harness import Harness

    key = RunKey(suite="fmnist-ood", backbone=DEMO, method="zero_shot", scores=("mcm", "energy"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = Harness().run(key, Execution(device="cpu", cache_dir=cache_dir, **execution), out=out)
    return result, [str(w.message) for w in caught]


# ---------------------------------------------------------------- item 16


def test_same_size_corruption_is_a_silent_hit_until_cache_verify_removes_it(cache, run_cli):
    final = _feature_file(cache)
    meta = json.loads((final.parent / "meta.json").read_text())
    key = FeatureKey(**{f: meta[f] for f in FeatureKey.__dataclass_fields__})
    _flip_keeping_size_and_mtime(final)
    assert _load_final(final.parent, key, meta["shape"][0]) is not None  # the documented size+mtime shortcut
    code, out, _ = run_cli("cache", "verify", "--cache-dir", cache, "--keep")
    assert code == 1 and "damaged features" in out and "sha256 differs" in out and "kept (--keep)" in out
    assert final.exists()
    code, out, _ = run_cli("cache", "verify", "--cache-dir", cache)
    assert code == 1 and "removed" in out and not final.exists() and not (final.parent / "meta.json").exists()
    assert _load_final(final.parent, key, meta["shape"][0]) is None  # the next run encodes it again
    code, out, _ = run_cli("cache", "verify", "--cache-dir", cache)
    assert code == 0 and "0 damaged" in out and "features" in out


def test_a_touched_intact_file_is_rehashed_once_and_trusted_again(cache):
    final = _feature_file(cache, "animal-mnist")
    os.utime(final, ns=(final.stat().st_atime_ns, final.stat().st_mtime_ns + 10**9))
    meta_path = final.parent / "meta.json"
    assert json.loads(meta_path.read_text())["mtime_ns"] != final.stat().st_mtime_ns
    entries = verify_cache(cache)
    assert all(e.ok for e in entries) and any(e.path == final for e in entries)
    assert json.loads(meta_path.read_text())["mtime_ns"] == final.stat().st_mtime_ns  # loads skip the hash again


def test_cache_verify_finds_damaged_outputs_text_features_and_leftovers(cache):
    npz = next(cache.glob("outputs/*/*/*.npz"))
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside a stored array: the zip's CRC-32 no longer matches
    npz.write_bytes(bytes(data))
    text = next(cache.glob("text/*.npy"))
    text.write_bytes(text.read_bytes()[:40])
    leftover = cache / "features" / ".features.npy.999999999.deadbeef.tmp"  # a writer that is gone
    leftover.write_bytes(b"partial")
    bad = {e.kind: e for e in verify_cache(cache) if not e.ok}
    assert set(bad) == {"outputs", "text", "temporary"}, bad
    assert not npz.parent.exists() and not text.exists() and not leftover.exists()


# ---------------------------------------------------------------- item 17


def test_a_cache_folder_that_cannot_be_created_still_gives_the_result(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    out = tmp_path / "results" / "run.parquet"
    result, messages = _run(blocker / "cache", out)
    assert result.path == out and validate_file(out).ok
    assert any("Cannot write the feature cache" in m and "in memory" in m for m in messages), messages
    assert any("output cache" in m for m in messages), messages
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(
        ["not-a-folder", "results", out.name, f"{out.stem}.scores.parquet"]
    )


def test_a_cache_made_read_only_after_features_were_cached_still_gives_the_result(
    cache, tmp_path, monkeypatch, demo_run
):
    shutil.rmtree(_feature_file(cache, "textiles").parent)  # one set is not cached: it must be encoded
    before = sorted(str(p.relative_to(cache)) for p in cache.rglob("*"))
    out = tmp_path / "results" / "run.parquet"
    with read_only(cache, monkeypatch):
        result, messages = _run(cache, out, reuse_outputs=False)
    assert validate_file(out).ok and result.path == out
    assert any("Cannot write the feature cache" in m and "'textiles'" in m for m in messages), messages
    assert any("Cannot write the output cache" in m for m in messages), messages
    assert sorted(str(p.relative_to(cache)) for p in cache.rglob("*")) == before  # nothing written, no .tmp left
    # the same numbers as the run that had a writable cache
    ours, theirs = read_results(out), read_results(demo_run["file"])
    key = ["score", "score_config", "ood_dataset"]
    merged = ours.merge(theirs, on=key, suffixes=("", "_ref"))
    assert len(merged) == len(ours) and np.allclose(merged["auroc"], merged["auroc_ref"], atol=1e-6)


# ---------------------------------------------------------------- item 15: the text-feature cache in a run


@pytest.mark.parametrize("damage", ["truncated", "wrong shape"])
def test_a_damaged_text_feature_cache_is_encoded_again_with_a_warning(cache, tmp_path, demo_run, damage):
    """A run whose text-feature cache file is garbled warns, encodes the prompts again, rewrites the file and
    gives the same numbers as the run with an intact cache."""
    (text,) = sorted(cache.glob("text/*.npy"))
    intact = np.load(text)
    if damage == "truncated":
        text.write_bytes(text.read_bytes()[:40])
    else:
        np.save(text, intact[:2])
    out = tmp_path / "results" / "run.parquet"
    result, messages = _run(cache, out, reuse_outputs=False)
    assert any("text-feature cache" in m and "encoding the prompts again" in m for m in messages), messages
    assert np.array_equal(np.load(text), intact)  # rewritten whole
    ours, theirs = read_results(out), read_results(demo_run["file"])
    merged = ours.merge(theirs, on=["score", "score_config", "ood_dataset"], suffixes=("", "_ref"))
    assert len(merged) == len(ours) and np.allclose(merged["auroc"], merged["auroc_ref"], atol=1e-6)
