"""The harness stages on the demo suite: what fit and predict may see, the interleaved test stream,
checks on what a method returns, and one clear paragraph when a method fails."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from benchmark.config import Execution, RunKey
from benchmark.errors import OodbenchError, UserCodeError
from benchmark.features import extract_features
from benchmark.harness import STREAM_BATCH, Harness, check_output, stream_order
from methods.base import METHODS, FeatureBatch, FitData, Method, MethodConfig, MethodOutput, l2_normalize, param

DEMO = "oodbench-tiny-fmnist:demo"
SUITE = "fmnist-ood"


def test_stream_order_is_a_seeded_interleaving_of_every_image():
    d, i = stream_order([5, 3, 4], seed=1)
    assert len(d) == 12
    assert sorted(zip(d.tolist(), i.tolist(), strict=True)) == [
        (k, j) for k, n in enumerate([5, 3, 4]) for j in range(n)
    ]
    d2, i2 = stream_order([5, 3, 4], seed=1)
    assert np.array_equal(d, d2) and np.array_equal(i, i2)
    d3, _ = stream_order([5, 3, 4], seed=2)
    assert not np.array_equal(d, d3)
    big, _ = stream_order([3000, 2000, 2000], seed=1)
    first = big[:STREAM_BATCH]
    assert len(set(first.tolist())) == 3  # the first batch already mixes ID and OOD images


@dataclass(frozen=True)
class SpyConfig(MethodConfig):
    views: int = param(2, low=0, high=64)


class Spy(Method):
    """Records every feature row it is shown in fit and predict."""

    Config = SpyConfig
    needs = frozenset({"views"})
    paper = "test spy"
    seen_fit: list[np.ndarray] = []
    seen_predict: list[np.ndarray] = []

    def fit(self, data: FitData) -> None:
        Spy.seen_fit += [data.train.global_.numpy(), data.val.global_.numpy()]
        Spy.seen_fit += list(data.train.views.numpy())

    def predict(self, batch: FeatureBatch) -> MethodOutput:
        Spy.seen_predict.append(batch.global_.numpy())
        scale = self.ctx.backbone.logit_scale
        return MethodOutput(logits=scale * l2_normalize(batch.global_) @ self.ctx.text_features.T, logit_scale=scale)


class CountingCheater(Method):
    """Tells ID from OOD by call order: the first calls hold the ID test set if the harness feeds it first."""

    Config = MethodConfig
    protocol = "zero-shot"
    provides = frozenset()
    paper = "test cheater"
    n_id = 3000
    calls = 0

    def predict(self, batch: FeatureBatch) -> MethodOutput:
        start = CountingCheater.calls
        CountingCheater.calls += len(batch.global_)
        positions = torch.arange(start, start + len(batch.global_))
        confident = (positions < self.n_id).float()[:, None] * torch.tensor([10.0, 0, 0, 0, 0, 0])
        return MethodOutput(logits=confident, logit_scale=1.0)


@pytest.fixture
def exe(demo_run) -> Execution:
    return Execution(device="cpu", cache_dir=demo_run["cache_dir"], save_scores=False)


def test_fit_sees_only_pool_images_and_predict_only_test_images(exe, tmp_path):
    Spy.seen_fit, Spy.seen_predict = [], []
    with METHODS.temporarily("spy", Spy):
        harness = Harness()
        key = RunKey(suite=SUITE, backbone=DEMO, method="spy", shots=4, seed=1, scores=("mcm",))
        harness.run(key, dataclasses.replace(exe, reuse_outputs=False), out=tmp_path / "r.parquet")
        resolved = harness.resolve(key)
        prepared = harness.prepare(resolved, exe)
        backbone = harness.backbone(DEMO, prepared.device, prepared.cache_dir)
        feats = {
            n: extract_features(backbone, ds, cache_dir=prepared.cache_dir).array.astype(np.float32)
            for n, ds in prepared.datasets.items()
        }
    fit_rows = {r.tobytes() for a in Spy.seen_fit for r in a.astype(np.float32)}
    predict_rows = {r.tobytes() for a in Spy.seen_predict for r in a.astype(np.float32)}
    test_rows = {r.tobytes() for n in resolved.test_sets for r in feats[n]}
    pool_rows = {r.tobytes() for r in feats[resolved.suite.pool]}
    split = prepared.split
    assert len(Spy.seen_fit[0]) == 6 * 4 and len(Spy.seen_fit[1]) == len(split.val)
    assert not fit_rows & test_rows  # nothing of the ID test set or any OOD set reaches fit
    assert {r.tobytes() for r in feats[resolved.suite.pool][np.r_[split.train, split.val]]} <= fit_rows
    assert predict_rows == test_rows and not predict_rows & pool_rows
    assert sum(len(a) for a in Spy.seen_predict) == sum(len(prepared.datasets[n]) for n in resolved.test_sets)


def test_a_method_cannot_tell_id_from_ood_by_call_order(exe, tmp_path):
    CountingCheater.calls = 0
    with METHODS.temporarily("cheater", CountingCheater):
        result = Harness().run(
            RunKey(suite=SUITE, backbone=DEMO, method="cheater", scores=("msp",)), exe, out=tmp_path / "r.parquet"
        )
    auroc = result.rows["auroc"]
    assert (auroc < 0.6).all() and (auroc > 0.4).all(), auroc  # chance, not the 100% it gets in dataset order


class WrongShape(Method):
    Config = MethodConfig
    protocol = "zero-shot"
    paper = "test"
    kind = "extra-classes"

    def predict(self, batch: FeatureBatch) -> MethodOutput:
        n = len(batch.global_)
        if self.kind == "extra-classes":
            return MethodOutput(logits=torch.zeros(n, 9), logit_scale=1.0)
        if self.kind == "1-d":
            return MethodOutput(logits=torch.zeros(n), logit_scale=1.0)
        if self.kind == "numpy":
            return MethodOutput(logits=np.zeros((n, 6)), logit_scale=1.0)
        raise ValueError("a bug in the method")


@pytest.mark.parametrize(
    "kind, message",
    [
        ("extra-classes", r"logits of shape \(\d+, 9\).*expected floats of shape \(\d+, 6\)"),
        ("1-d", r"logits of shape \(\d+,\)"),
        ("numpy", "logits as ndarray; they must be a torch.Tensor"),
        ("raises", r"Method 'wrong' predict failed: ValueError: a bug in the method\. Run again with --debug"),
    ],
)
def test_what_predict_returns_is_checked_with_a_clear_error(kind, message, exe, tmp_path):
    cls = type("W", (WrongShape,), {"kind": kind})
    with METHODS.temporarily("wrong", cls), pytest.raises(OodbenchError, match=message) as info:
        Harness().run(
            RunKey(suite=SUITE, backbone=DEMO, method="wrong", scores=("msp",)), exe, out=tmp_path / "r.parquet"
        )
    if kind == "raises":
        assert isinstance(info.value, UserCodeError) and isinstance(info.value.__cause__, ValueError)
    assert not list(tmp_path.iterdir())  # nothing written


def test_check_output_accepts_a_good_output():
    out = MethodOutput(
        logits=torch.zeros(4, 3),
        logit_scale=2.0,
        local_logits=torch.zeros(4, 5, 3),
        extra={"neg_logits": torch.zeros(4, 7)},
    )
    assert check_output(out, method="m", n=4, n_classes=3, local=True) is out
    with pytest.raises(OodbenchError, match=r"extra\['neg_logits'\]"):
        check_output(
            dataclasses.replace(out, extra={"neg_logits": torch.zeros(3, 7)}), method="m", n=4, n_classes=3, local=True
        )


@pytest.mark.parametrize("seed", [-1, 2**70, True])
def test_bad_seeds_are_one_clear_error(seed):
    with pytest.raises(OodbenchError, match="--seed must be a whole number from 0 to"):
        RunKey(suite=SUITE, backbone=DEMO, method="zero_shot", seed=seed)


def test_scores_that_do_not_apply_are_listed_not_run(exe, tmp_path):
    with METHODS.temporarily("cheater", CountingCheater):
        harness = Harness()
        resolved = harness.resolve(RunKey(suite=SUITE, backbone=DEMO, method="cheater"))
        assert "gl_mcm" in resolved.not_applicable and "gl_mcm" not in [s.name for s in resolved.scores]
        with pytest.raises(OodbenchError, match="reads local, which method 'cheater' does not provide"):
            harness.resolve(RunKey(suite=SUITE, backbone=DEMO, method="cheater", scores=("gl_mcm",)))
