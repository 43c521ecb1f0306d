"""One run, in five named stages: every entry point (run, sweep, reproduce, demo, benchmarks) calls these.

1. `resolve`  RunKey -> Resolved: names checked, the method's effective config built, the scores chosen
              (only those that apply to the method's output); nothing is loaded yet.
2. `prepare`  -> Prepared: datasets loaded and verified against their pins, the few-shot split drawn,
              the class names read, the backbone's identity known (the model is loaded only if needed).
3. `fit`      -> a fitted Method: features of the split come from the feature cache. A method that tunes
              the encoders (`needs={"images"}`) also gets the split as images and a trainable copy of the
              backbone; afterwards `reencode` encodes the test sets with its tuned model (cached under the
              sha256 of its tuned weights) and the run reads those features instead of the frozen ones.
4. `outputs`  -> RunOutputs: every test image goes through `predict` once, in fixed-size batches of a
              seeded interleaving of the ID test set and every OOD set (no dataset boundaries, so a
              method cannot tell them apart by call order), and is reassembled per dataset.
5. `rows`     -> result rows (every score on every OOD set, with metrics and provenance) and the
              per-sample scores.
`run` chains them, reads and writes the output cache (a repeated run, or one that only adds a score,
skips stages 3-4), and writes the per-sample scores sidecar and the result file atomically.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import benchmark
from benchmark.backbones import Backbone, BackboneIdentity, load_backbone, remember_identity, remembered_identity
from benchmark.config import Execution, RunKey, default_cache_dir, resolve_image_pipeline
from benchmark.data import LoadedDataset, load_dataset, read_classnames
from benchmark.encoders import DASSL_CROP_SCALE, view_kind
from benchmark.errors import OodbenchError, user_code_error
from benchmark.features import extract_features, text_features
from benchmark.fewshot import FewShotSplit, fewshot_split
from benchmark.hashing import sha256_file
from benchmark.metrics import id_accuracy, ood_metrics
from benchmark.output_cache import DatasetOutputs, OutputCache, OutputKey, RunOutputs, code_fingerprint
from benchmark.progress import Progress
from benchmark.protocols import EXTRA_DATA, LANGUAGE_MODEL
from benchmark.provenance import (
    device_description,
    git_commit,
    measure,
    package_versions,
    resolve_device,
    seed_everything,
)
from benchmark.results import (
    INTERVAL_METRICS,
    SCHEMA_VERSION,
    ResultRow,
    interval_columns,
    rows_frame,
    run_stem,
    score_column,
    scores_frame,
    scores_path,
    weights_path,
    write_results,
    write_scores,
)
from benchmark.splitimages import SplitImages
from benchmark.stats import bootstrap_intervals
from benchmark.suites import SUITES, SuiteSpec
from benchmark.tuned import StageCache, TunedWeights, trainable_copy, write_weights
from methods import load_methods
from methods.base import (
    METHODS,
    FeatureBatch,
    FitData,
    Method,
    MethodConfig,
    MethodContext,
    MethodOutput,
    canonical_config,
    config_hash,
    fits_split,
    make_config,
    tunes_encoders,
)
from methods.scores import SCORES, ScoreInput, ScoreSpec, parse_score, score_spec

STREAM_BATCH = 256  # test images per predict call
STREAM_SALT = 0x5EED  # keeps the stream's permutation apart from other draws of the same seed


# ---------------------------------------------------------------- stage results


@dataclass(frozen=True)
class Resolved:
    """Stage 1: what will run."""

    key: RunKey
    suite: SuiteSpec
    method_cls: type[Method]
    config: MethodConfig
    config_json: str
    config_hash: str
    scores: list[ScoreSpec]
    not_applicable: list[str]  # registered scores this method's output cannot feed

    @property
    def shots(self) -> int:
        return self.key.shots

    @property
    def test_sets(self) -> list[str]:
        """The ID test set, then every OOD set in suite order: the datasets the stream mixes."""
        return [self.suite.id_test] + [name for _, name in self.suite.ood_sets()]

    @property
    def local_scores(self) -> list[ScoreSpec]:
        return [s for s in self.scores if s.score.local is not None]

    @property
    def needs_local(self) -> bool:
        return bool(self.local_scores) or bool({"local", "local_width"} & self.method_cls.needs)

    @property
    def local_kind(self) -> str:
        """The patch-token feature kind the method reads: before the projection for "local_width" methods."""
        return "local_width" if "local_width" in self.method_cls.needs else "local"

    def stem(self) -> str:
        return run_stem(
            suite=self.suite.name,
            backbone=self.key.backbone,
            method=self.key.method,
            config_hash=self.config_hash,
            shots=self.shots,
            seed=self.key.seed,
        )


@dataclass
class Prepared:
    """Stage 2: the run's data, verified, and where it runs."""

    datasets: dict[str, LoadedDataset]
    split: FewShotSplit | None
    classnames: list[str]
    identity: BackboneIdentity
    device: torch.device
    cache_dir: Path
    execution: Execution

    @property
    def dataset_hashes(self) -> dict[str, str]:
        return {name: ds.list_sha256 for name, ds in self.datasets.items()}


@dataclass
class RunFeatures:
    """The cached feature arrays a run reads: per test set (global, and patch tokens when needed) and, for
    few-shot methods, of the pool and the split's augmented views."""

    test: list[np.ndarray]
    test_local: list[np.ndarray] | None = None
    pool: np.ndarray | None = None
    pool_local: np.ndarray | None = None
    views: np.ndarray | None = None
    local_views: np.ndarray | None = None  # patch tokens of the same views, for methods needing "local" and "views"


@dataclass
class Reencoded:
    """A tuned method's test features, re-encoded with its tuned model, and the weights that made them."""

    features: RunFeatures
    weights: TunedWeights
    blob: bytes  # canonical safetensors bytes of `weights`
    sha256: str


@dataclass
class RunResult:
    rows: pd.DataFrame
    path: Path | None
    scores_path: Path | None
    cache_hits: dict[str, bool]
    seconds: dict[str, float]
    not_applicable: list[str] = field(default_factory=list)
    weights_path: Path | None = None


# ---------------------------------------------------------------- helpers


def local_key(spec: ScoreSpec) -> str:
    """The name of a score variant's patch-logit reduction in the outputs (and their cache)."""
    return f"{spec.name}{spec.config_json}"


def stream_order(sizes: list[int], *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded interleaving of every image of the test sets: (dataset index, image index) per position."""
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    perm = np.random.default_rng([seed, STREAM_SALT]).permutation(int(offsets[-1]))
    dataset = np.searchsorted(offsets, perm, side="right") - 1
    return dataset, perm - offsets[dataset]


def _gather(arrays: list[np.ndarray], dataset: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Rows (dataset[i], index[i]) of the per-dataset arrays, in batch order, as float32 (sorted reads)."""
    out = np.empty((len(dataset), *arrays[0].shape[1:]), dtype=np.float32)
    for d in np.unique(dataset):
        pos = np.flatnonzero(dataset == d)
        order = np.argsort(index[pos], kind="stable")
        out[pos[order]] = arrays[d][index[pos][order]]
    return out


def _tensor(a: np.ndarray | None, device: torch.device) -> torch.Tensor | None:
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device)


def check_output(out: object, *, method: str, n: int, n_classes: int, local: bool) -> MethodOutput:
    """A predict result is a MethodOutput of torch tensors with one row per image and one column per class."""
    where = f"Method {method!r} predict"
    if not isinstance(out, MethodOutput):
        raise OodbenchError(f"{where} returned {type(out).__name__}; it must return methods.base.MethodOutput.")
    expected = (n, n_classes)
    if not isinstance(out.logits, torch.Tensor):
        raise OodbenchError(
            f"{where} returned logits as {type(out.logits).__name__}; they must be a torch.Tensor of shape {expected}."
        )
    if tuple(out.logits.shape) != expected or not out.logits.is_floating_point():
        raise OodbenchError(
            f"{where} returned logits of shape {tuple(out.logits.shape)} ({out.logits.dtype}); "
            f"expected floats of shape {expected} (one row per image, one column per ID class)."
        )
    if not isinstance(out.logit_scale, (int, float)) or not math.isfinite(out.logit_scale) or out.logit_scale <= 0:
        raise OodbenchError(f"{where} returned logit_scale {out.logit_scale!r}; it must be a positive number.")
    if local:
        ll = out.local_logits
        if not isinstance(ll, torch.Tensor) or ll.ndim != 3 or ll.shape[0] != n or ll.shape[2] != n_classes:
            shape = tuple(ll.shape) if isinstance(ll, torch.Tensor) else None
            raise OodbenchError(
                f"{where} returned local_logits of shape {shape} for a batch with patch features; "
                f"expected ({n}, patches, {n_classes})."
            )
    for name, value in out.extra.items():
        if not isinstance(value, torch.Tensor) or value.shape[:1] != (n,):
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise OodbenchError(
                f"{where} returned extra[{name!r}] of shape {shape}; extra arrays are torch tensors "
                f"with one row per image ({n})."
            )
    return out


def _outside_files(method_cls: type[Method]) -> list[Path]:
    """The source file of a method that lives outside oodbench (--method-file or a plugin), if any."""
    try:
        path = Path(inspect.getfile(method_cls)).resolve()
    except (TypeError, OSError):
        return []
    inside = Path(benchmark.__file__).resolve().parents[1]
    return [] if inside in path.parents else [path]


def is_main_process() -> bool:
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def check_writable(folder: Path) -> None:
    """Fail before any work if results could not be written into `folder`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".oodbench-write-test-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise OodbenchError(
            f"Cannot write results into {folder}: {err.strerror}. Pass --out or --results-dir "
            f"pointing at a writable folder."
        ) from None


# ---------------------------------------------------------------- the harness


class Harness:
    """Runs RunKeys; holds loaded backbones and datasets so that a sweep loads each once."""

    def __init__(self, *, progress: Progress | None = None) -> None:
        self.progress = progress or Progress(enabled=False)
        self._backbones: dict[tuple[str, str], Backbone] = {}
        self._datasets: dict[tuple[str, str], LoadedDataset] = {}

    # -- shared loading

    def backbone(self, name: str, device: torch.device, cache_dir: Path) -> Backbone:
        key = (name, str(device))
        if key not in self._backbones:
            self._backbones[key] = load_backbone(name, device=device)
            remember_identity(self._backbones[key], cache_dir=cache_dir)
        return self._backbones[key]

    def identity(self, name: str, device: torch.device, cache_dir: Path) -> BackboneIdentity:
        """The backbone's identity; the model is loaded only if it was never loaded with this cache."""
        loaded = self._backbones.get((name, str(device)))
        if loaded is not None:
            return loaded.identity
        return remembered_identity(name, cache_dir=cache_dir) or self.backbone(name, device, cache_dir).identity

    def dataset(self, name: str, suite: SuiteSpec, data_root: Path | None) -> LoadedDataset:
        key = (name, str(data_root))
        if key not in self._datasets:
            self._datasets[key] = load_dataset(suite.datasets()[name], data_root=data_root)
        return self._datasets[key]

    # -- stage 1

    def resolve(self, key: RunKey) -> Resolved:
        """Check every name and number of the key and build the method's config and score list; no data is read."""
        load_methods()
        suite = SUITES.get(key.suite)
        method_cls = METHODS.get(key.method)
        if fits_split(method_cls) and key.shots < 1:
            raise OodbenchError(f"Method {key.method!r} trains on a few-shot split: pass --shots (1, 2, 4, 8 or 16).")
        if not fits_split(method_cls) and key.shots != 0:
            raise OodbenchError(
                f"Method {key.method!r} is {method_cls.protocol} and uses no training images; drop "
                f"--shots (or pass --shots 0)."
            )
        config = make_config(method_cls, key.config, family=suite.family)
        cfg_json = canonical_config(config)
        provides = frozenset(method_cls.provides)
        if key.scores:
            scores = list(dict.fromkeys(parse_score(s) for s in key.scores))
            for s in scores:
                if not s.score.applies_to(provides):
                    missing = ", ".join(sorted(s.score.requires - provides))
                    raise OodbenchError(
                        f"Score {s.name!r} reads {missing}, which method {key.method!r} does not "
                        f"provide; drop it from --scores (`oodbench list scores` says what each reads)."
                    )
            not_applicable = []
        else:
            applicable = [s for s in SCORES.names() if SCORES.get(s).applies_to(provides)]
            scores = [score_spec(s) for s in applicable]
            not_applicable = [s for s in SCORES.names() if s not in applicable]
        return Resolved(
            key=key,
            suite=suite,
            method_cls=method_cls,
            config=config,
            config_json=cfg_json,
            config_hash=config_hash(key.method, cfg_json),
            scores=scores,
            not_applicable=not_applicable,
        )

    # -- stage 2

    def prepare(self, resolved: Resolved, execution: Execution) -> Prepared:
        """Load and verify the datasets, draw the few-shot split, read the class names, identify the backbone."""
        suite, data_root = resolved.suite, execution.data_root
        device = resolve_device(execution.device)
        cache_dir = Path(execution.cache_dir) if execution.cache_dir else default_cache_dir()
        names = resolved.test_sets + ([suite.pool] if fits_split(resolved.method_cls) else [])
        datasets = {name: self.dataset(name, suite, data_root) for name in names}
        classnames = read_classnames(suite.classnames, data_root=data_root)
        labels = datasets[suite.id_test].labels
        if labels.size and (labels.min() < 0 or labels.max() >= len(classnames)):
            raise OodbenchError(
                f"Dataset {suite.id_test!r} has labels outside 0..{len(classnames) - 1}, but suite "
                f"{suite.name!r} has {len(classnames)} class names ({suite.classnames}); the data "
                f"or the class-name file is not the one the suite expects."
            )
        split = None
        if fits_split(resolved.method_cls):
            pool = datasets[suite.pool]
            split = fewshot_split(
                pool.labels, shots=resolved.shots, seed=resolved.key.seed, pool_sha256=pool.list_sha256
            )
        identity = self.identity(resolved.key.backbone, device, cache_dir)
        return Prepared(
            datasets=datasets,
            split=split,
            classnames=classnames,
            identity=identity,
            device=device,
            cache_dir=cache_dir,
            execution=execution,
        )

    def _extract(
        self,
        prepared: Prepared,
        backbone: Backbone,
        dataset: LoadedDataset,
        kind: str,
        cache_hits: dict[str, bool],
        *,
        label: str = "",
    ) -> np.ndarray:
        ex = prepared.execution
        f = extract_features(
            backbone,
            dataset,
            cache_dir=prepared.cache_dir,
            kind=kind,
            precision=ex.precision,
            batch_size=ex.batch_size,
            num_workers=ex.num_workers,
            progress=self.progress,
            pipeline=ex.image_pipeline,
        )
        cache_hits[f"{label}{dataset.spec.name}:{kind}"] = f.cache_hit
        return f.array

    def features(
        self, resolved: Resolved, prepared: Prepared, *, cache_hits: dict[str, bool] | None = None
    ) -> RunFeatures:
        """Every cached feature array the run reads (encoded now where the cache lacks it): part of preparing
        the data, done only when the run's outputs are not cached, and not counted in the method's cost."""
        cache_hits = {} if cache_hits is None else cache_hits
        split, cls = prepared.split, resolved.method_cls
        n_views = int(getattr(resolved.config, "views", 0)) if split is not None and "views" in cls.needs else 0
        crop_scale = tuple(getattr(resolved.config, "crop_scale", DASSL_CROP_SCALE))
        kinds = [view_kind(n_views, crop_scale, local=local) for local in (False, True)] if n_views else []
        kinds = kinds if "local" in cls.needs else kinds[:1]  # views of patch tokens only for methods reading them
        backbone = self.backbone(resolved.key.backbone, prepared.device, prepared.cache_dir)
        sets = [prepared.datasets[n] for n in resolved.test_sets]
        if tunes_encoders(resolved.method_cls):  # its test features come from its tuned model (`reencode`)
            feats = RunFeatures(test=[])
        else:
            feats = RunFeatures(
                test=[self._extract(prepared, backbone, ds, "global", cache_hits) for ds in sets],
                test_local=[self._extract(prepared, backbone, ds, resolved.local_kind, cache_hits) for ds in sets]
                if resolved.needs_local
                else None,
            )
        if split is not None:
            pool = prepared.datasets[resolved.suite.pool]
            feats.pool = self._extract(prepared, backbone, pool, "global", cache_hits)
            if {"local", "local_width"} & cls.needs:
                feats.pool_local = self._extract(prepared, backbone, pool, resolved.local_kind, cache_hits)
            if kinds:  # augmented views only of the split's images (not the whole pool: ImageNet's is 1.28M)
                subset = pool.subset(split.train, tag=split.sha256[:16])
                feats.views = self._extract(prepared, backbone, subset, kinds[0], cache_hits)
                if len(kinds) == 2:  # and their patch tokens (LoCoOp)
                    feats.local_views = self._extract(prepared, backbone, subset, kinds[1], cache_hits)
        return feats

    # -- stage 3

    def build_method(self, resolved: Resolved, prepared: Prepared) -> Method:
        """The method with its context: the backbone, class names, zero-shot classifier, device and seeded
        generator; a method that tunes the encoders gets a trainable deep copy of the backbone (the shared one
        stays frozen and untouched for the other runs of this Harness) and the stage cache."""
        device, cache_dir = prepared.device, prepared.cache_dir
        backbone = self.backbone(resolved.key.backbone, device, cache_dir)
        generator = seed_everything(resolved.key.seed)
        classnames = prepared.classnames
        templates = resolved.suite.prompt_templates()

        def classifier(templates: list[str]) -> torch.Tensor:
            return text_features(backbone, classnames, templates, cache_dir=cache_dir)

        context = MethodContext(
            backbone=backbone,
            classnames=classnames,
            text_features=classifier(templates),
            device=device,
            generator=generator,
            text_classifier=classifier,
            templates=list(templates),
            cache_dir=cache_dir,
        )
        if tunes_encoders(resolved.method_cls):
            context.backbone = replace(backbone, model=trainable_copy(backbone.model, device))
            context.stage_cache = self.stage_cache(resolved, prepared)
        try:
            return resolved.method_cls(config=resolved.config, context=context)
        except OodbenchError:
            raise
        except Exception as err:
            raise user_code_error(f"Method {resolved.key.method!r} (building it from its config)", err) from err

    def fit_data(self, resolved: Resolved, prepared: Prepared, features: RunFeatures) -> FitData | None:
        """What `fit` receives: the split's cached features (and views) and the pool's validation part; None
        for methods that are not fitted."""
        split, device = prepared.split, prepared.device
        if split is None:
            return None
        labels = torch.from_numpy(prepared.datasets[resolved.suite.pool].labels).to(device)

        def batch(
            idx: np.ndarray, views: np.ndarray | None = None, local_views: np.ndarray | None = None
        ) -> FeatureBatch:
            v = _tensor(views, device)
            local = None if features.pool_local is None else _tensor(features.pool_local[idx], device)
            return FeatureBatch(
                global_=_tensor(features.pool[idx], device),
                local=local,
                views=None if v is None else v.transpose(0, 1).contiguous(),
                local_views=None
                if local_views is None
                else torch.from_numpy(np.ascontiguousarray(local_views.swapaxes(0, 1))),
            )

        images = None
        if tunes_encoders(resolved.method_cls):  # the split's images only: a dataset of exactly those images
            pool = prepared.datasets[resolved.suite.pool]
            images = SplitImages(
                pool.subset(split.train, tag=split.sha256[:16]), threads=prepared.execution.num_workers
            )
        return FitData(
            train=batch(split.train, features.views, features.local_views),
            labels=labels[split.train],
            val=batch(split.val),
            val_labels=labels[split.val],
            shots=split.shots,
            images=images,
        )

    def fit(self, resolved: Resolved, prepared: Prepared, features: RunFeatures) -> Method:
        """Build the method and, for few-shot methods, fit it on the split's cached features (and images). With
        `Execution.tuned_weights` an encoder-tuning method loads those shipped weights instead of fitting."""
        method = self.build_method(resolved, prepared)
        shipped = prepared.execution.tuned_weights
        if shipped is not None:
            if not tunes_encoders(resolved.method_cls):
                raise OodbenchError(
                    f"Method {resolved.key.method!r} does not tune the encoders, so it has no tuned weights to "
                    f"evaluate; drop --weights."
                )
            weights = TunedWeights.read(shipped)
            try:
                method.load_tuned_weights(weights)
            except OodbenchError:
                raise
            except Exception as err:
                raise user_code_error(f"Method {resolved.key.method!r} load_tuned_weights", err) from err
            return method
        data = self.fit_data(resolved, prepared, features)
        if data is not None:
            try:
                with torch.enable_grad():
                    method.fit(data)
            except OodbenchError:
                raise
            except Exception as err:
                raise user_code_error(f"Method {resolved.key.method!r} fit", err) from err
        return method

    def stage_cache(self, resolved: Resolved, prepared: Prepared) -> StageCache:
        """The cache of fitted stages shared by runs (WiSE-FT's fine-tuning for every alpha), keyed by what makes
        a stage's result besides the method's own settings: backbone, split, seed, device kind and code."""
        ident, split = prepared.identity, prepared.split
        return StageCache(
            prepared.cache_dir,
            {
                "arch": ident.arch,
                "weights_sha256": ident.weights_sha256,
                "suite": resolved.suite.name,
                "pool": prepared.datasets[resolved.suite.pool].list_sha256,
                "fewshot_hash": split.sha256 if split else "",
                "seed": resolved.key.seed,
                "device": prepared.device.type,
                "code": code_fingerprint(*_outside_files(resolved.method_cls)),
            },
        )

    def reencode(
        self, resolved: Resolved, prepared: Prepared, method: Method, *, cache_hits: dict[str, bool] | None = None
    ) -> Reencoded:
        """Encode every test set with the tuned model of an encoder-tuning method. The features are cached under
        the sha256 of its tuned weights (with the backbone's), so a repeated fit reads them back and a different
        fit never reads another's."""
        cache_hits = {} if cache_hits is None else cache_hits
        name = resolved.key.method
        try:
            weights = method.tuned_weights()
            model = method.tuned_model()
        except OodbenchError:
            raise
        except Exception as err:
            raise user_code_error(f"Method {name!r} tuned_weights/tuned_model", err) from err
        if not isinstance(weights, TunedWeights) or not isinstance(model, torch.nn.Module):
            raise OodbenchError(
                f"Method {name!r} must return benchmark.tuned.TunedWeights from tuned_weights() and a torch module "
                f"from tuned_model(); got {type(weights).__name__} and {type(model).__name__}."
            )
        blob = weights.to_bytes()
        sha = hashlib.sha256(blob).hexdigest()
        frozen = self.backbone(resolved.key.backbone, prepared.device, prepared.cache_dir)
        tuned = replace(
            frozen,
            name=f"{frozen.name}+tuned",
            model=model.eval(),
            weights_sha256=f"{frozen.weights_sha256}+tuned:{sha}",
            weights_path=None,
        )
        sets = [prepared.datasets[n] for n in resolved.test_sets]
        features = RunFeatures(
            test=[self._extract(prepared, tuned, ds, "global", cache_hits, label="tuned:") for ds in sets],
            test_local=[self._extract(prepared, tuned, ds, "local", cache_hits, label="tuned:") for ds in sets]
            if resolved.needs_local
            else None,
        )
        return Reencoded(features=features, weights=weights, blob=blob, sha256=sha)

    # -- stage 4

    @torch.inference_mode()
    def outputs(self, resolved: Resolved, prepared: Prepared, method: Method, features: RunFeatures) -> RunOutputs:
        """Every test image through `predict` once, in batches of a seeded interleaving of all test sets,
        reassembled per dataset in pinned-list order."""
        names = resolved.test_sets
        sets = [prepared.datasets[n] for n in names]
        glob, loc = features.test, features.test_local
        n_classes = len(prepared.classnames)
        dataset_idx, image_idx = stream_order([len(ds) for ds in sets], seed=resolved.key.seed)
        logits = [np.empty((len(ds), n_classes), np.float32) for ds in sets]
        extra: list[dict[str, np.ndarray]] = [{} for _ in sets]
        local = [{local_key(s): np.empty(len(ds), np.float64) for s in resolved.local_scores} for ds in sets]
        scale = None
        name = resolved.key.method
        for start in range(0, len(dataset_idx), STREAM_BATCH):
            d, i = dataset_idx[start : start + STREAM_BATCH], image_idx[start : start + STREAM_BATCH]
            batch = FeatureBatch(
                global_=_tensor(_gather(glob, d, i), prepared.device),
                local=None if loc is None else _tensor(_gather(loc, d, i), prepared.device),
            )
            try:
                out = method.predict(batch)
            except OodbenchError:
                raise
            except Exception as err:
                raise user_code_error(f"Method {name!r} predict", err) from err
            out = check_output(
                out,
                method=name,
                n=len(d),
                n_classes=n_classes,
                local=batch.local is not None and "local" in resolved.method_cls.provides,
            )
            scale = float(out.logit_scale)
            values = out.logits.float().cpu().numpy()
            reductions = {
                local_key(s): s.score.local(out.local_logits, scale, **s.config).double().cpu().numpy()
                for s in resolved.local_scores
            }
            for k in np.unique(d):
                pos = d == k
                logits[k][i[pos]] = values[pos]
                for key, tensor in out.extra.items():
                    arr = tensor.float().cpu().numpy()
                    if key not in extra[k]:
                        extra[k][key] = np.empty((len(sets[k]), *arr.shape[1:]), np.float32)
                    extra[k][key][i[pos]] = arr[pos]
                for key, arr in reductions.items():
                    local[k][key][i[pos]] = arr[pos]
        return RunOutputs(
            datasets={n: DatasetOutputs(logits[k], extra[k], local[k]) for k, n in enumerate(names)},
            logit_scale=float(scale or 1.0),
        )

    # -- stage 5

    def rows(
        self, resolved: Resolved, prepared: Prepared, outputs: RunOutputs, *, run_id: str
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Every score on every OOD set as result rows, and the per-sample scores table."""
        suite, key = resolved.suite, resolved.key
        id_out = outputs.datasets[suite.id_test]
        id_labels = prepared.datasets[suite.id_test].labels
        acc = id_accuracy(id_out.logits, id_labels)
        per_dataset: dict[str, dict[str, np.ndarray]] = {}
        for name, o in outputs.datasets.items():
            label = prepared.datasets[name].labels if name == suite.id_test else np.full(len(o.logits), -1)
            per_dataset[name] = {"label": label, "pred": o.logits.argmax(axis=1)}
        columns = {}
        for spec in resolved.scores:
            column = columns[local_key(spec)] = score_column(spec.name, spec.config_json)
            for name, o in outputs.datasets.items():
                inputs = ScoreInput(
                    logits=o.logits, logit_scale=outputs.logit_scale, extra=o.extra, local=o.local.get(local_key(spec))
                )
                # float32, as the sidecar stores them: the metrics are computed from exactly the values kept,
                # so `oodbench rescore` gives every number back
                per_dataset[name][column] = spec.score(inputs, spec.config).astype(np.float32)
        ex = prepared.execution
        cls = resolved.method_cls
        common = dict(
            suite=suite.name,
            suite_version=suite.version,
            backbone=key.backbone,
            method=key.method,
            method_config=resolved.config_json,
            config_hash=resolved.config_hash,
            shots=resolved.shots,
            seed=key.seed,
            id_dataset=suite.id_test,
            id_acc=acc,
            protocol=cls.protocol,
            uses_extra_data=EXTRA_DATA in cls.uses,
            uses_language_model=LANGUAGE_MODEL in cls.uses,
            stream_seed=key.seed,
            stream_batch_size=STREAM_BATCH,
            run_id=run_id,
            created_at=datetime.now(timezone.utc),
            oodbench_version=benchmark.__version__,
            git_commit=git_commit(),
            package_versions=json.dumps(package_versions(), sort_keys=True),
            device=device_description(prepared.device),
            precision=ex.precision,
            weights_sha256=prepared.identity.weights_sha256,
            tuned_weights_sha256=outputs.tuned_weights_sha256,
            fewshot_hash=prepared.split.sha256 if prepared.split else "",
            dataset_hashes=json.dumps(prepared.dataset_hashes, sort_keys=True),
            scores_sha256="",
            schema_version=SCHEMA_VERSION,
            fit_seconds=outputs.fit_seconds,
            predict_seconds=outputs.predict_seconds,
            peak_memory_mb=outputs.peak_memory_mb,
        )
        rows = []
        id_correct = id_out.logits.argmax(axis=1) == id_labels
        for spec in resolved.scores:
            column = columns[local_key(spec)]
            id_scores = per_dataset[suite.id_test][column]
            for group, name in suite.ood_sets():
                ood_scores = per_dataset[name][column]
                m = ood_metrics(id_scores, ood_scores)
                # intervals only for runs that keep their per-sample scores, so that anyone can recompute them
                ci = bootstrap_intervals(id_scores, ood_scores, id_correct=id_correct) if ex.save_scores else {}
                bounds = {
                    c: ci.get(metric, (math.nan, math.nan))[k]
                    for metric in INTERVAL_METRICS
                    for k, c in enumerate(interval_columns(metric))
                }
                rows.append(
                    ResultRow(
                        **{**common, **bounds},
                        score=spec.name,
                        score_config=spec.config_json,
                        ood_dataset=name,
                        ood_group=group,
                        fpr95=m.fpr95,
                        fpr95_ood_positive=m.fpr95_ood_positive,
                        auroc=m.auroc,
                        aupr_in=m.aupr_in,
                        aupr_out=m.aupr_out,
                        n_id=m.n_id,
                        n_ood=m.n_ood,
                    )
                )
        return rows_frame(rows), scores_frame(per_dataset, columns)

    # -- everything

    def output_key(self, resolved: Resolved, prepared: Prepared) -> OutputKey:
        ident = prepared.identity
        return OutputKey(
            arch=ident.arch,
            weights_sha256=ident.weights_sha256,
            preprocess=ident.preprocess_id,
            image_pipeline=resolve_image_pipeline(prepared.execution.image_pipeline),
            precision=prepared.execution.precision,
            suite=resolved.suite.name,
            suite_version=resolved.suite.version,
            dataset_hashes=json.dumps(prepared.dataset_hashes, sort_keys=True),
            method=resolved.key.method,
            config_hash=resolved.config_hash,
            shots=resolved.shots,
            seed=resolved.key.seed,
            fewshot_hash=prepared.split.sha256 if prepared.split else "",
            stream=f"{resolved.key.seed}/{STREAM_BATCH}",
            code=code_fingerprint(*_outside_files(resolved.method_cls)),
            weights=sha256_file(prepared.execution.tuned_weights) if prepared.execution.tuned_weights else "",
        )

    def compute(
        self, resolved: Resolved, prepared: Prepared, cache_hits: dict[str, bool]
    ) -> tuple[RunOutputs, Reencoded | None]:
        """The features, then stages 3 and 4 with their cost measured (the shared frozen features excluded). For
        a method that tunes the encoders, re-encoding the test sets with its tuned model is part of predict's
        cost, and a fitted stage it reused from the stage cache counts with what it cost when it was computed."""
        features = self.features(resolved, prepared, cache_hits=cache_hits)
        with measure(prepared.device) as fit_cost:
            method = self.fit(resolved, prepared, features)
        stages = getattr(getattr(method, "ctx", None), "stage_cache", None)
        if stages is not None:
            fit_cost.seconds += stages.reused_seconds
            fit_cost.peak_memory_mb = max(fit_cost.peak_memory_mb, stages.reused_peak_memory_mb)
            cache_hits.update({f"stage:{k}": v for k, v in stages.hits.items()})
        reencoded = None
        with measure(prepared.device) as predict_cost:
            if tunes_encoders(resolved.method_cls):
                reencoded = self.reencode(resolved, prepared, method, cache_hits=cache_hits)
                features = reencoded.features
            outputs = self.outputs(resolved, prepared, method, features)
        outputs = replace(
            outputs,
            fit_seconds=fit_cost.seconds,
            predict_seconds=predict_cost.seconds,
            peak_memory_mb=max(fit_cost.peak_memory_mb, predict_cost.peak_memory_mb),
            tuned_weights_sha256=reencoded.sha256 if reencoded else "",
        )
        return outputs, reencoded

    def run(
        self, key: RunKey, execution: Execution, *, out: Path | None = None, results_dir: Path | None = None
    ) -> RunResult:
        """Run one key and write its result file (and per-sample scores sidecar); returns the rows."""
        t0 = time.perf_counter()
        seconds: dict[str, float] = {}
        resolved = self.resolve(key)
        run_id = uuid.uuid4().hex
        if out is None:
            out = result_path(Path(results_dir or "results"), resolved, run_id)
        out = Path(out)
        if out.exists():
            raise OodbenchError(f"{out} already exists; results are never overwritten. Choose another --out.")
        if is_main_process():
            check_writable(out.parent)
        prepared = self.prepare(resolved, execution)
        seconds["load"] = time.perf_counter() - t0

        output_key = self.output_key(resolved, prepared)
        cache = OutputCache(prepared.cache_dir)
        local = [local_key(s) for s in resolved.local_scores]
        ship = execution.save_weights and tunes_encoders(resolved.method_cls)
        # shipping weights needs them in hand: refit (the tuned features still come from their cache)
        reuse = execution.reuse_outputs and not ship
        outputs = cache.load(output_key, datasets=resolved.test_sets, local=local) if reuse else None
        cache_hits: dict[str, bool] = {"outputs": outputs is not None}
        reencoded = None
        if outputs is None:
            t = time.perf_counter()
            outputs, reencoded = self.compute(resolved, prepared, cache_hits)
            seconds["fit"], seconds["predict"] = outputs.fit_seconds, outputs.predict_seconds
            seconds["compute"] = time.perf_counter() - t
            if is_main_process():
                cache.save(output_key, outputs)

        t = time.perf_counter()
        rows, per_sample = self.rows(resolved, prepared, outputs, run_id=run_id)
        seconds["score"] = time.perf_counter() - t
        path = side = shipped = None
        if is_main_process():  # under torchrun every rank computes the same rows; rank 0 writes them
            blob = reencoded.blob if ship and reencoded is not None else None
            rows, path, side, shipped = write_run(
                rows, per_sample, out, save_scores=execution.save_scores, weights_blob=blob
            )
        seconds["total"] = time.perf_counter() - t0
        return RunResult(
            rows=rows,
            path=path,
            scores_path=side,
            cache_hits=cache_hits,
            seconds=seconds,
            not_applicable=resolved.not_applicable,
            weights_path=shipped,
        )


def result_path(results_dir: Path, resolved: Resolved, run_id: str) -> Path:
    """Where a run's file goes under a results folder: `<method>/<run stem>__<run id prefix>.parquet`, the
    layout results/ keeps (one folder per method)."""
    return results_dir / resolved.key.method / f"{resolved.stem()}__{run_id[:8]}.parquet"


def write_run(
    rows: pd.DataFrame, per_sample: pd.DataFrame, out: Path, *, save_scores: bool, weights_blob: bytes | None = None
) -> tuple[pd.DataFrame, Path, Path | None, Path | None]:
    """The sidecars first (the scores' sha256 goes into the rows; the tuned weights' is there already), then the
    result file; if the result file cannot be written the sidecars are removed again, so nothing half-written is
    left. Returns the rows as written and the paths of the result file, scores and weights."""
    side = shipped = None
    try:
        if weights_blob is not None:
            shipped = write_weights(weights_path(out), weights_blob)
        if save_scores:
            side = write_scores(per_sample, scores_path(out))
            rows = rows.assign(scores_sha256=sha256_file(side))
        return rows, write_results(rows, out), side, shipped
    except BaseException:
        for p in (side, shipped):
            if p is not None:
                p.unlink(missing_ok=True)
        raise


def run(
    key: RunKey,
    execution: Execution | None = None,
    *,
    out: Path | None = None,
    results_dir: Path | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Run one (suite, backbone, method + config, shots, seed) and write its Parquet file."""
    return Harness(progress=progress).run(key, execution or Execution(), out=out, results_dir=results_dir)
