"""Dress rehearsal of every registered real suite, through the `oodbench` command line, on miniature copies.

tests/rehearsal_data.py writes a miniature of every real dataset in its authors' layout; here each is
prepared with `oodbench data prepare`, every suite is checked with `oodbench data check`, and every real
suite is run with zero-shot CLIP, with Tip-Adapter (1 shot) and with a nearest-neighbour probe, on a small
randomly initialised open_clip ViT. The rows must name every OOD set of the suite in its group, count
exactly the images of the miniature, keep every metric in [0, 1], and classify over the suite's classes.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from rehearsal_data import Miniature, write_miniatures

from benchmark.data import read_classnames
from benchmark.datasets import DATASETS, UNKNOWN_COUNT, ImageListSource, load_families
from benchmark.suites import SUITES
from methods import METHODS, SCORES, load_methods
from methods.base import FeatureBatch, FitData, Method, MethodConfig, MethodOutput

ARCH = "oodbench-rehearsal-vit"
# A tiny open_clip ViT: 32x32 input, 16x16 patches, two 64-wide blocks; a one-block text tower.
MODEL_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1},
}
# The number of classes each real suite classifies over, from the datasets' publications.
SUITE_CLASSES = {
    "imagenet1k-far": 1000,
    "imagenet1k-near": 1000,
    "imagenet10-vs-20": 10,
    "imagenet20-vs-10": 20,
    "imagenet100-far": 100,
    "cub200-far": 200,
    "stanford-cars-far": 196,
    "food101-far": 101,
    "oxford-pets-far": 37,
}
DEMO_SUITES = ("fmnist-ood",)
PROBE = "rehearsal_nn_probe"

pytestmark = pytest.mark.slow


@dataclass
class Rehearsal:
    mini: Miniature
    data_root: Path
    cache_dir: Path
    out: Path
    backbone: str
    prepared: bool = False
    log: str = ""


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory) -> Iterator[Rehearsal]:
    """The miniature copies and a randomly initialised tiny ViT registered with open_clip, saved as safetensors.

    Torch runs single-threaded meanwhile: the model's ops are so small that intra-op threads only wait on each
    other (20x slower per op on a busy 2-core machine)."""
    import open_clip
    from safetensors.torch import save_file

    tmp = tmp_path_factory.mktemp("rehearsal")
    config = tmp / f"{ARCH}.json"
    config.write_text(json.dumps(MODEL_CONFIG))
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    model = open_clip.create_model(ARCH, pretrained=None)
    weights = tmp / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield Rehearsal(
        mini=write_miniatures(tmp / "downloads"),
        data_root=tmp / "data-root",
        cache_dir=tmp / "cache",
        out=tmp / "results",
        backbone=f"{ARCH}:{weights}",
    )
    torch.set_num_threads(threads)


def _local_specs():
    load_families()
    return {name: spec for name, spec in DATASETS.items() if isinstance(spec.source, ImageListSource)}


@pytest.fixture
def prepared(rehearsal, run_cli) -> Rehearsal:
    """Every real dataset prepared once (the first test to ask does it), each from the folder docs/data.md names,
    with --accept-count where the spec asserts a count the miniature cannot meet."""
    if rehearsal.prepared:
        return rehearsal
    assert not rehearsal.log, "preparing failed in an earlier test:\n" + rehearsal.log
    rehearsal.log = "unfinished"
    log = []
    for name, spec in _local_specs().items():
        args = ["data", "prepare", name, "--from", rehearsal.mini.sources[name], "--data-root", rehearsal.data_root]
        if spec.num_images != UNKNOWN_COUNT:
            args.append("--accept-count")
        code, out, err = run_cli(*args)
        log.append(f"$ oodbench {' '.join(map(str, args))}\n{out}{err}")
        assert code == 0, "\n".join(log)
        assert f"prepared {name}: {rehearsal.mini.counts[name]} images" in " ".join(out.split()), log[-1]
        if spec.num_images != UNKNOWN_COUNT:
            assert "(accepted)" in out, log[-1]
    rehearsal.prepared, rehearsal.log = True, ""
    return rehearsal


def test_every_real_dataset_and_suite_is_rehearsed(rehearsal):
    assert set(_local_specs()) == set(rehearsal.mini.sources) == set(rehearsal.mini.counts)
    assert set(SUITES.names()) == set(SUITE_CLASSES) | set(DEMO_SUITES)


def test_prepared_class_names_are_the_published_ones(prepared):
    """Shipped class names and the ones `prepare` writes from the copy: the right count, order and spelling."""
    for file, names in prepared.mini.classnames.items():
        assert read_classnames(file, data_root=prepared.data_root) == names, file
    for suite, count in SUITE_CLASSES.items():
        assert len(read_classnames(SUITES.get(suite).classnames, data_root=prepared.data_root)) == count, suite


@pytest.mark.parametrize("suite", sorted(SUITE_CLASSES))
def test_data_check_passes_on_the_prepared_miniature(suite, prepared, run_cli):
    code, out, err = run_cli("data", "check", suite, "--data-root", prepared.data_root, "--verify-images")
    assert code == 0, out + err
    assert "are present and match their pins" in " ".join(out.split())


def test_splits_whose_classes_differ_are_refused(prepared, run_cli, tmp_path):
    """Stanford Cars' labels are positions in the class list its train folders gave; a test split with other
    folders would shift them all."""
    test = tmp_path / "test"
    shutil.copytree(prepared.mini.sources["stanford-cars-test"], test)
    shutil.rmtree(sorted(test.iterdir())[5])
    code, out, err = run_cli(
        "data", "prepare", "stanford-cars-test", "--from", test, "--data-root", prepared.data_root, "--accept-count"
    )
    assert code == 2 and "differ from" in err and "stanford-cars196.txt" in err, out + err
    assert (prepared.data_root / "stanford-cars" / "test").resolve() == prepared.mini.sources["stanford-cars-test"]


@dataclass(frozen=True)
class ProbeConfig(MethodConfig):
    record: str = ""  # a JSON file the probe writes what it was given into


class NearestNeighbourProbe(Method):
    """1-nearest neighbour over every pool image `fit` sees (split and validation part); records its class names.

    Every ID test image of the miniatures is a copy of a pool image of its class, so the probe's ID accuracy
    is 1 exactly when the test and pool labels agree and the logits have a column per class."""

    Config = ProbeConfig
    provides = frozenset()  # logits only: no patch tokens
    paper = "oodbench rehearsal: a 1-nearest-neighbour probe that checks labels and class counts"

    def fit(self, data: FitData) -> None:
        self.keys = torch.cat([data.train.global_, data.val.global_]).float()
        self.key_labels = torch.cat([data.labels, data.val_labels])
        record = {"classes": len(self.ctx.classnames), "text_rows": int(self.ctx.text_features.shape[0])}
        Path(self.config.record).write_text(json.dumps({**record, "names": self.ctx.classnames}))

    def predict(self, batch: FeatureBatch) -> MethodOutput:
        dist = torch.cdist(batch.global_.float(), self.keys)
        logits = torch.full((len(dist), len(self.ctx.classnames)), -1e4)
        index = self.key_labels.expand_as(dist)
        logits = logits.scatter_reduce(1, index, -dist, reduce="amax", include_self=True)
        return MethodOutput(logits=logits, logit_scale=1.0)


def _run(rehearsal: Rehearsal, run_cli, suite: str, method: str, *extra: str) -> pd.DataFrame:
    out = rehearsal.out / f"{suite}-{method}.parquet"
    args = ["run", "--suite", suite, "--backbone", rehearsal.backbone, "--method", method, "--device", "cpu"]
    args += ["--data-root", rehearsal.data_root, "--cache-dir", rehearsal.cache_dir, "--out", out, "--no-progress"]
    code, stdout, stderr = run_cli(*args, *extra)
    assert code == 0, stdout + stderr
    return pd.read_parquet(out)


def _check_rows(rows: pd.DataFrame, *, suite_name: str, counts: dict[str, int], scores: list[str]) -> None:
    suite = SUITES.get(suite_name)
    assert set(rows["suite"]) == {suite_name} and set(rows["id_dataset"]) == {suite.id_test}
    assert sorted(set(rows["score"])) == sorted(scores)
    for score, group in rows.groupby("score"):
        assert sorted(zip(group["ood_group"], group["ood_dataset"], strict=True)) == sorted(suite.ood_sets()), score
    assert (rows["n_id"] == counts[suite.id_test]).all()
    assert (rows["n_ood"] == rows["ood_dataset"].map(counts)).all()
    metrics = rows[["fpr95", "auroc", "aupr_in", "aupr_out", "id_acc"]].to_numpy(dtype=float)
    assert np.isfinite(metrics).all() and (metrics >= 0).all() and (metrics <= 1).all()
    assert rows["id_acc"].nunique() == 1  # one ID accuracy per run
    hashes = json.loads(rows["dataset_hashes"].iloc[0])
    assert {suite.id_test, *(name for _, name in suite.ood_sets())} <= set(hashes)


def applicable(method: str) -> list[str]:
    """The registered scores that read only what `method`'s output provides (the ones a run computes)."""
    return [s for s in SCORES.names() if SCORES.get(s).applies_to(frozenset(METHODS.get(method).provides))]


@pytest.mark.parametrize("suite", sorted(SUITE_CLASSES))
def test_every_real_suite_runs_end_to_end(suite, prepared, run_cli, tmp_path):
    load_methods()
    counts = prepared.mini.counts
    zero_shot = _run(prepared, run_cli, suite, "zero_shot")
    _check_rows(zero_shot, suite_name=suite, counts=counts, scores=applicable("zero_shot"))
    assert (zero_shot["shots"] == 0).all()

    tip = _run(prepared, run_cli, suite, "tip_adapter", "--shots", "1")
    _check_rows(tip, suite_name=suite, counts=counts, scores=applicable("tip_adapter"))
    assert (tip["shots"] == 1).all() and tip["fewshot_hash"].str.len().eq(64).all()

    record = tmp_path / "probe.json"
    with METHODS.temporarily(PROBE, NearestNeighbourProbe):
        probe = _run(prepared, run_cli, suite, PROBE, "--shots", "1", "--scores", "msp", "--config", f"record={record}")
    _check_rows(probe, suite_name=suite, counts=counts, scores=["msp"])
    given = json.loads(record.read_text())
    assert given["classes"] == given["text_rows"] == SUITE_CLASSES[suite]
    assert given["names"] == read_classnames(SUITES.get(suite).classnames, data_root=prepared.data_root)
    assert probe["id_acc"].iloc[0] == 1.0  # test and pool labels agree, over every class of the suite
