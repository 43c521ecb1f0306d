"""Methods that tune the encoders, through the harness on the demo suite: what `fit` is shown (images of the
split and nothing else, a trainable copy of the backbone), the re-encoded test features and their cache, the
WiSE-FT endpoint, shipped weights and `oodbench reproduce`, sweeps over several alphas. Every run uses one
shot and small settings, so that the file takes about a minute on a CPU."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from benchmark.config import Execution, RunKey
from benchmark.errors import OodbenchError
from benchmark.harness import Harness
from benchmark.reproduce import reproduce_file
from benchmark.results import (
    INTERVAL_COLUMNS,
    METRIC_COLUMNS,
    read_results,
    registered_suites,
    result_files,
    validate_file,
)
from benchmark.splitimages import SplitImages
from benchmark.sweep import plan
from benchmark.tuned import TunedWeights
from methods.base import (
    METHODS,
    EncoderTuner,
    FeatureBatch,
    FitData,
    Method,
    MethodConfig,
    MethodOutput,
    l2_normalize,
    param,
)

DEMO = "oodbench-tiny-fmnist:demo"
SUITE = "fmnist-ood"


@pytest.fixture
def exe(demo_run) -> Execution:
    return Execution(device="cpu", cache_dir=demo_run["cache_dir"], save_scores=False)


def key(method: str, *, shots: int = 1, seed: int = 1, scores=("mcm",), **config) -> RunKey:
    return RunKey(suite=SUITE, backbone=DEMO, method=method, config=config, scores=scores, shots=shots, seed=seed)


def pixels(image) -> bytes:
    return np.asarray(image.convert("RGB")).tobytes()


# ---------------------------------------------------------------- what fit sees


@dataclass(frozen=True)
class SpyConfig(MethodConfig):
    shift: float = param(0.05, low=0.0, high=1.0)


class ImageSpy(EncoderTuner):
    """Records every image `fit` is shown (two passes over the split), checks its backbone is a copy, and
    'tunes' it by shifting the image projection, so that the re-encoded features differ from the frozen ones."""

    Config = SpyConfig
    paper = "test spy"
    passes: list[list[bytes]] = []
    models: list[torch.nn.Module] = []

    def fit(self, data: FitData) -> None:
        ImageSpy.passes = []
        for _ in range(2):
            seen: list[bytes] = []

            def record(images, seen=seen):
                seen.extend(pixels(im) for im in images)
                return torch.zeros(len(images), 3, 28, 28)

            for batch, labels in data.images.batches(batch_size=4, augment=record, generator=self.ctx.generator):
                assert batch.shape[0] == len(labels) <= 4
            ImageSpy.passes.append(seen)
        ImageSpy.models = [self.ctx.backbone.model]
        with torch.no_grad():
            self.ctx.backbone.model.visual.proj.add_(self.config.shift)

    def tuned_model(self) -> torch.nn.Module:
        return self.ctx.backbone.model

    def tuned_weights(self) -> TunedWeights:
        return TunedWeights.make(
            {"visual.proj": self.ctx.backbone.model.visual.proj},
            method="image_spy",
            kind="encoder",
            base_weights_sha256=self.ctx.backbone.weights_sha256,
        )

    def load_tuned_weights(self, weights: TunedWeights) -> None:
        with torch.no_grad():
            self.ctx.backbone.model.visual.proj.copy_(weights.tensors["visual.proj"])

    def predict(self, batch: FeatureBatch) -> MethodOutput:
        scale = self.ctx.backbone.logit_scale
        return MethodOutput(logits=scale * l2_normalize(batch.global_) @ self.ctx.text_features.T, logit_scale=scale)


def test_fit_sees_the_splits_images_only_and_trains_a_copy_of_the_backbone(exe, tmp_path):
    harness = Harness()
    with METHODS.temporarily("image_spy", ImageSpy):
        k = key("image_spy", shots=4)
        resolved = harness.resolve(k)
        prepared = harness.prepare(resolved, exe)
        frozen = harness.backbone(DEMO, prepared.device, prepared.cache_dir).model
        before = {n: v.clone() for n, v in frozen.state_dict().items()}
        result = harness.run(k, dataclasses.replace(exe, reuse_outputs=False), out=tmp_path / "r.parquet")
    pool = prepared.datasets[resolved.suite.pool]
    split = prepared.split
    expected = sorted(pixels(pool.get_image(int(i))) for i in split.train)
    first, second = ImageSpy.passes
    assert sorted(first) == expected and sorted(second) == expected  # every split image once per pass
    assert first != second  # each pass is a fresh shuffle
    test_images = {
        pixels(prepared.datasets[n].get_image(i)) for n in resolved.test_sets for i in range(len(prepared.datasets[n]))
    }
    assert not set(first) & test_images  # no ID-test or OOD image reaches fit
    others = {pixels(pool.get_image(i)) for i in range(len(pool)) if i not in set(split.train.tolist())}
    assert not set(first) & others  # nor pool images outside the split
    assert ImageSpy.models[0] is not frozen
    assert all(torch.equal(before[n], v) for n, v in frozen.state_dict().items())  # the shared backbone is untouched
    shipped = TunedWeights.make(
        {"visual.proj": before["visual.proj"] + 0.05},
        method="image_spy",
        kind="encoder",
        base_weights_sha256=prepared.identity.weights_sha256,
    )
    assert result.rows["tuned_weights_sha256"].iloc[0] == hashlib.sha256(shipped.to_bytes()).hexdigest()
    # predict read the test sets re-encoded by the tuned model, never the frozen features
    assert {k for k in result.cache_hits if k.endswith(":global")} == {
        "fmnist-id6-pool:global",
        *(f"tuned:{n}:global" for n in resolved.test_sets),
    }


def test_split_images_reshuffle_every_pass_and_keep_labels_with_their_images():
    class Toy:
        labels = np.array([0, 0, 1, 1, 2])

        def __len__(self):
            return 5

        def get_image(self, i):
            from PIL import Image

            return Image.fromarray(np.full((2, 2, 3), i, dtype=np.uint8))

    images = SplitImages(Toy())
    passes = images.batches(
        batch_size=2,
        augment=lambda ims: torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1).float() for im in ims]),
        generator=torch.Generator().manual_seed(0),
    )
    epochs = [list(passes) for _ in range(3)]
    for batches in epochs:
        assert [len(b[1]) for b in batches] == [2, 2, 1]  # the last batch is partial
        ids = [int(x[0, 0, 0]) for imgs, _ in batches for x in imgs]
        labels = [int(y) for _, ys in batches for y in ys]
        assert sorted(ids) == [0, 1, 2, 3, 4] and labels == [int(Toy.labels[i]) for i in ids]
    orders = {tuple(int(x[0, 0, 0]) for imgs, _ in b for x in imgs) for b in epochs}
    assert len(orders) > 1
    with pytest.raises(OodbenchError, match="augmentation returned"):
        list(images.batches(batch_size=2, augment=lambda ims: torch.zeros(3), generator=torch.Generator()))


def test_an_images_method_must_be_an_encoder_tuner():
    class NotATuner(Method):
        Config = MethodConfig
        needs = frozenset({"images"})
        paper = "test"

        def predict(self, batch):
            raise AssertionError

    with pytest.raises(OodbenchError, match="must subclass methods.base.EncoderTuner"):
        with METHODS.temporarily("not_a_tuner", NotATuner):
            pass


# ---------------------------------------------------------------- re-encoded features and their cache


def test_a_repeated_tuned_run_reads_its_features_from_the_cache_and_another_fit_never_does(exe, tmp_path):
    fresh = dataclasses.replace(exe, reuse_outputs=False)
    harness = Harness()
    a = harness.run(key("full_ft", lr=4e-5), fresh, out=tmp_path / "a.parquet")
    b = harness.run(key("full_ft", lr=4e-5), fresh, out=tmp_path / "b.parquet")
    tuned = [k for k in b.cache_hits if k.startswith("tuned:")]
    assert len(tuned) == 5 and all(b.cache_hits[k] for k in tuned)  # ID test and every OOD set
    assert b.cache_hits["stage:finetune_classifier"]
    sha = a.rows["tuned_weights_sha256"].iloc[0]
    assert len(sha) == 64 and b.rows["tuned_weights_sha256"].iloc[0] == sha
    assert a.rows[list(METRIC_COLUMNS)].equals(b.rows[list(METRIC_COLUMNS)])
    c = harness.run(key("full_ft", lr=8e-5), fresh, out=tmp_path / "c.parquet")
    assert c.rows["tuned_weights_sha256"].iloc[0] != sha
    assert not any(c.cache_hits[k] for k in c.cache_hits if k.startswith("tuned:"))
    assert not c.rows["auroc"].equals(a.rows["auroc"])
    for r in (a, c):
        assert (r.rows["fit_seconds"] > 0).all() and (r.rows["predict_seconds"] > 0).all()
    # a cached stage still counts with what it cost: the repeat's fit time includes the reused fine-tuning
    assert b.rows["fit_seconds"].iloc[0] >= 0.5 * a.rows["fit_seconds"].iloc[0]


def test_wise_ft_at_alpha_0_gives_exactly_the_zero_shot_rows(demo_run, tmp_path):
    """Every metric and interval of every score (GL-MCM's patch tokens re-encoded too) equals zero-shot's."""
    zero_shot = read_results(demo_run["file"])
    run = Harness().run(
        key("wise_ft", scores=(), alpha=0.0),
        Execution(device="cpu", cache_dir=demo_run["cache_dir"]),
        out=tmp_path / "w.parquet",
    )
    cols = ["score", "score_config", "ood_dataset", *METRIC_COLUMNS, *INTERVAL_COLUMNS]
    ours = run.rows[cols].sort_values(["score", "score_config", "ood_dataset"]).reset_index(drop=True)
    theirs = zero_shot[cols].sort_values(["score", "score_config", "ood_dataset"]).reset_index(drop=True)
    assert ours.equals(theirs), ours.compare(theirs)
    assert run.rows["protocol"].iloc[0] == "few-shot" and run.rows["tuned_weights_sha256"].iloc[0]


# ---------------------------------------------------------------- shipped weights and reproduce


def test_shipped_weights_are_written_validated_and_reproduced(exe, tmp_path):
    ship = dataclasses.replace(exe, save_weights=True, save_scores=True)
    result = Harness().run(key("clip_lora", iters_per_shot=3), ship, out=tmp_path / "entry.parquet")
    weights = tmp_path / "entry.weights.safetensors"
    assert result.weights_path == weights and weights.exists()
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert set(result.rows["tuned_weights_sha256"]) == {digest}
    shipped = TunedWeights.read(weights)
    assert shipped.kind == "lora" and all("lora_" in k for k in shipped.tensors)
    assert validate_file(result.path, suites=registered_suites()).ok
    assert result_files(tmp_path) == [result.path]  # the weights (and scores) are sidecars, not entries
    plain = dataclasses.replace(exe, save_weights=False)
    records = tmp_path / "records"
    (out,) = reproduce_file(result.path, execution=plain, record_dir=records, use_shipped_weights=True)
    assert out.verified and out.max_abs_diff == 0.0 and not out.warnings
    record = json.loads(out.record_path.read_text())
    assert record["weights"] == {"mode": "shipped", "file": weights.name, "sha256": digest}
    (refit,) = reproduce_file(result.path, execution=plain, record_dir=records)
    assert refit.verified and not refit.warnings  # the refit gives the same weights on a CPU
    assert json.loads(refit.record_path.read_text())["weights"] == {"mode": "refit"}
    # other weights are refused by reproduce, and shipped weights changed after the run fail validation
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 1
    other = tmp_path / "other.safetensors"
    other.write_bytes(bytes(blob))
    with pytest.raises(OodbenchError, match="not the weights the entry was measured with"):
        reproduce_file(result.path, execution=plain, record_dir=records, weights=other)
    weights.write_bytes(bytes(blob))
    assert any("does not match tuned_weights_sha256" in p for p in validate_file(result.path).problems)


def test_shipped_weights_of_a_frozen_feature_entry_are_refused(demo_run, tmp_path):
    with pytest.raises(OodbenchError, match="names no tuned_weights_sha256"):
        reproduce_file(
            demo_run["file"],
            execution=Execution(device="cpu", cache_dir=demo_run["cache_dir"]),
            record_dir=tmp_path,
            use_shipped_weights=True,
        )


# ---------------------------------------------------------------- sweeps over several alphas


def test_a_sweep_takes_several_alphas_and_a_run_takes_one(run_cli, tmp_path):
    from benchmark.cli.options import parse_config, parse_config_grid

    single, grid = parse_config_grid(["alpha=0", "alpha=0.5", "alpha=1", "epochs=2"])
    assert single == {"epochs": 2} and grid == {"alpha": [0, 0.5, 1]}
    runs = plan(
        suite=SUITE,
        backbone=DEMO,
        methods=["wise_ft", "full_ft"],
        shots=[1, 4],
        seeds=[1],
        config=single,
        grid=grid,
    )
    wise = [r for r in runs if r.method == "wise_ft"]
    assert [(r.key.config["alpha"], r.shots) for r in wise] == [(a, k) for a in (0, 0.5, 1) for k in (1, 4)]
    assert len({r.stem for r in wise}) == 6  # one file per alpha and shots
    assert [r.key.config for r in runs if r.method == "full_ft"] == [{"epochs": 2}] * 2  # no alpha there
    with pytest.raises(OodbenchError, match="given 2 times"):
        parse_config(["alpha=0", "alpha=1"])
    code, _, err = run_cli(
        "run", "--suite", SUITE, "--backbone", DEMO, "--method", "wise_ft", "--shots", "1",
        "--config", "alpha=0", "--config", "alpha=1", "--results-dir", str(tmp_path),
    )  # fmt: skip
    assert code != 0 and "one run takes one value" in err
    with pytest.raises(OodbenchError, match="both one value and several"):
        plan(suite=SUITE, backbone=DEMO, methods=["wise_ft"], shots=[1], seeds=[1], config={"alpha": 0}, grid=grid)
