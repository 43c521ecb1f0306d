"""Feature extraction at scale, on a small generated ImageNet-like folder and the demo backbone:
sharded over 2 gloo ranks, resumed after SIGKILL, and damaged cache files, all equal to a plain run."""

from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_datacheck import IMAGENET10_WNIDS, imagenet_spec, make_imagenet_like

import benchmark.features as features_mod
from benchmark.backbones import DEMO_BACKBONE, load_backbone
from benchmark.data import load_dataset
from benchmark.datacheck import prepare_dataset
from benchmark.features import FeatureKey, extract_features, preprocess_key

PER_CLASS = 3  # 30 images
BLOCK = 4  # -> 8 blocks, so both ranks get several
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def backbone():
    return load_backbone(DEMO_BACKBONE, device="cpu")


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    """A prepared tiny dataset, and its features from one plain uninterrupted run."""
    tmp = tmp_path_factory.mktemp("extract")
    spec = imagenet_spec(num_images=10 * PER_CLASS)
    copy = make_imagenet_like(tmp / "copy" / "val", IMAGENET10_WNIDS, per_class=PER_CLASS)
    data_root = tmp / "data-root"
    prepare_dataset(spec, copy, data_root=data_root)
    return {"tmp": tmp, "spec": spec, "data_root": data_root}


@pytest.fixture(scope="module")
def reference(setting, backbone):
    ds = load_dataset(setting["spec"], data_root=setting["data_root"])
    feats = extract_features(backbone, ds, cache_dir=setting["tmp"] / "plain-cache", block_size=BLOCK, batch_size=BLOCK)
    assert not feats.cache_hit and feats.array.shape == (10 * PER_CLASS, 64)
    assert feats.array.dtype == np.float16 and isinstance(feats.array, np.memmap)
    return np.array(feats.array)


def _folder(setting, backbone, cache_dir: Path) -> Path:
    ds = load_dataset(setting["spec"], data_root=setting["data_root"])
    key = FeatureKey(
        backbone.arch,
        backbone.weights_sha256,
        preprocess_key(backbone)[0],
        "fp32",
        ds.spec.name,
        ds.spec.version,
        ds.list_sha256,
        "global",
    )
    return key.folder(cache_dir)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_worker(rank: int, world: int, port: int, spec_blob: bytes, data_root: str, cache_dir: str, out: str) -> None:
    """One torchrun-like rank: the env torchrun sets, then the CLI's process_group() and a normal extraction."""
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        OODBENCH_DIST_BACKEND="gloo",
    )
    torch.set_num_threads(1)
    from benchmark.distributed import process_group, rank_world

    with process_group():
        assert rank_world() == (rank, world)
        spec = pickle.loads(spec_blob)
        ds = load_dataset(spec, data_root=Path(data_root))
        bb = load_backbone(DEMO_BACKBONE, device="cpu")
        calls: list[int] = []
        original = features_mod._encode_blocks
        features_mod._encode_blocks = lambda *a, **k: (calls.extend(a[2]), original(*a, **k))[1]
        feats = extract_features(bb, ds, cache_dir=Path(cache_dir), block_size=BLOCK, batch_size=BLOCK)
        np.save(Path(out) / f"rank{rank}.npy", np.asarray(feats.array))
        (Path(out) / f"rank{rank}.blocks").write_text(",".join(map(str, sorted(calls))))
    assert not torch.distributed.is_initialized()


def test_two_gloo_ranks_equal_a_single_process(setting, reference, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    args = (
        2,
        _free_port(),
        pickle.dumps(setting["spec"]),
        str(setting["data_root"]),
        str(tmp_path / "cache"),
        str(out),
    )
    torch.multiprocessing.spawn(_rank_worker, args=args, nprocs=2, join=True)
    blocks = [set(map(int, (out / f"rank{r}.blocks").read_text().split(","))) for r in range(2)]
    assert blocks == [{0, 2, 4, 6}, {1, 3, 5, 7}]  # round-robin: each rank encoded only its own blocks
    for r in range(2):
        np.testing.assert_array_equal(np.load(out / f"rank{r}.npy"), reference)


_KILLABLE = """
import pickle, sys, time
from pathlib import Path
import benchmark.features as f
from benchmark.backbones import DEMO_BACKBONE, load_backbone
from benchmark.data import load_dataset
spec, data_root, cache_dir = pickle.loads(Path(sys.argv[1]).read_bytes())
save = f.save_npy_atomic
def slow_save(path, array):  # slow each block down so the parent can kill the run in the middle
    save(path, array)
    time.sleep(0.5)
f.save_npy_atomic = slow_save
f.extract_features(load_backbone(DEMO_BACKBONE), load_dataset(spec, data_root=data_root),
                   cache_dir=cache_dir, block_size=4, batch_size=4)
"""


def test_sigkilled_extraction_resumes_with_only_missing_blocks(setting, reference, backbone, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    job = tmp_path / "job.pkl"
    job.write_bytes(pickle.dumps((setting["spec"], setting["data_root"], cache)))
    block_dir = _folder(setting, backbone, cache) / "blocks"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", _KILLABLE, str(job)], env=env, cwd=REPO)
    deadline = time.monotonic() + 120
    try:
        while len(list(block_dir.glob("[0-9]*.npy"))) < 3:
            assert proc.poll() is None, "the extraction finished or failed before it could be killed"
            assert time.monotonic() < deadline, "no blocks appeared in time"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    done = {int(p.stem) for p in block_dir.glob("[0-9]*.npy")}
    assert 3 <= len(done) < 8 and not (block_dir.parent / "features.npy").exists()

    encoded: list[int] = []
    original = features_mod._encode_blocks
    monkeypatch.setattr(features_mod, "_encode_blocks", lambda *a, **k: (encoded.extend(a[2]), original(*a, **k))[1])
    ds = load_dataset(setting["spec"], data_root=setting["data_root"])
    feats = extract_features(backbone, ds, cache_dir=cache, block_size=BLOCK, batch_size=BLOCK)
    assert sorted(encoded) == sorted(set(range(8)) - done)  # only what was missing
    np.testing.assert_array_equal(np.asarray(feats.array), reference)
    assert not block_dir.exists()  # blocks are removed once assembled


def test_leftover_temporary_and_truncated_blocks_are_never_used(setting, reference, backbone, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    block_dir = _folder(setting, backbone, cache) / "blocks"
    block_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    # a block a killed writer left half-written under its temporary name, one truncated and one of the wrong shape
    (block_dir / ".000001.npy.4242.tmp").write_bytes(b"\x93NUMPY garbage")
    features_mod.save_npy_atomic(block_dir / "000002.npy", rng.standard_normal((BLOCK, 64)).astype(np.float16))
    blob = (block_dir / "000002.npy").read_bytes()
    (block_dir / "000002.npy").write_bytes(blob[: len(blob) - 100])
    features_mod.save_npy_atomic(block_dir / "000003.npy", rng.standard_normal((BLOCK - 1, 64)).astype(np.float16))
    good = reference[4 * BLOCK : 5 * BLOCK]
    features_mod.save_npy_atomic(block_dir / "000004.npy", good)

    encoded: list[int] = []
    original = features_mod._encode_blocks
    monkeypatch.setattr(features_mod, "_encode_blocks", lambda *a, **k: (encoded.extend(a[2]), original(*a, **k))[1])
    ds = load_dataset(setting["spec"], data_root=setting["data_root"])
    feats = extract_features(backbone, ds, cache_dir=cache, block_size=BLOCK, batch_size=BLOCK)
    assert sorted(encoded) == [0, 1, 2, 3, 5, 6, 7]  # the intact block 4 is reused, the damaged ones re-encoded
    np.testing.assert_array_equal(np.asarray(feats.array), reference)


@pytest.mark.parametrize("damage", ["truncate", "flip", "no-meta"])
def test_damaged_final_features_are_detected_and_rebuilt(damage, setting, reference, backbone, tmp_path):
    ds = load_dataset(setting["spec"], data_root=setting["data_root"])
    cache = tmp_path / "cache"
    first = extract_features(backbone, ds, cache_dir=cache, block_size=BLOCK, batch_size=BLOCK)
    path = first.path
    assert extract_features(backbone, ds, cache_dir=cache, block_size=BLOCK).cache_hit
    blob = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(bytes(blob[: len(blob) // 2]))
    elif damage == "flip":
        blob[-7] ^= 0xFF  # same size, one byte of the data changed
        path.write_bytes(bytes(blob))
    else:
        (path.parent / "meta.json").unlink()  # killed between writing features.npy and meta.json
    with pytest.warns(UserWarning, match="incomplete or damaged"):
        again = extract_features(backbone, ds, cache_dir=cache, block_size=BLOCK, batch_size=BLOCK)
    assert not again.cache_hit
    np.testing.assert_array_equal(np.asarray(again.array), reference)
    assert extract_features(backbone, ds, cache_dir=cache, block_size=BLOCK).cache_hit


def test_reduced_precision_is_part_of_the_cache_key(setting, reference, backbone, tmp_path):
    ds = load_dataset(setting["spec"], data_root=setting["data_root"])
    bf16 = extract_features(backbone, ds, cache_dir=tmp_path, precision="bf16", block_size=BLOCK, batch_size=BLOCK)
    assert not bf16.cache_hit and "bf16" not in str(reference.dtype)
    assert bf16.array.dtype == np.float16 and bf16.array.shape == reference.shape
    np.testing.assert_allclose(np.asarray(bf16.array, np.float32), reference.astype(np.float32), atol=0.1, rtol=0.05)


def test_out_of_memory_halves_the_batch_and_keeps_finished_blocks(setting, reference, backbone, tmp_path, monkeypatch):
    from benchmark.encoders import FEATURE_KINDS

    real = FEATURE_KINDS.get("global")
    seen: list[int] = []

    def small_memory(bb, images):  # a device that fits at most 2 images per batch
        seen.append(len(images))
        if len(images) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(bb, images)

    ds = load_dataset(setting["spec"], data_root=setting["data_root"])
    with (
        FEATURE_KINDS.replaced("global", small_memory),
        pytest.warns(UserWarning, match="continuing with --batch-size 2"),
    ):
        feats = extract_features(backbone, ds, cache_dir=tmp_path, block_size=BLOCK, batch_size=BLOCK)
    assert seen[0] == BLOCK and set(seen[1:]) == {2}
    np.testing.assert_allclose(np.asarray(feats.array, np.float32), reference.astype(np.float32), atol=2e-3)


def test_an_untouched_cache_file_is_not_rehashed_on_load(setting, backbone, tmp_path, monkeypatch):
    import benchmark.features as features_mod

    ds = load_dataset(setting["spec"], data_root=setting["data_root"])
    cache = tmp_path / "cache"
    extract_features(backbone, ds, cache_dir=cache, block_size=BLOCK, batch_size=BLOCK)

    def no_hashing(path):
        raise AssertionError(f"{path} was re-hashed although it is unchanged since it was written")

    monkeypatch.setattr(features_mod, "sha256_file", no_hashing)
    assert extract_features(backbone, ds, cache_dir=cache, block_size=BLOCK).cache_hit
