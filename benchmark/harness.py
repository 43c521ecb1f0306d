"""run(...) -> rows: one fit, then every score on every OOD set, written as one Parquet file.

Data flow: resolve suite, backbone, method and scores (all names checked before any work) ->
load and verify datasets -> cached features -> fit on the few-shot split -> logits once per test
set -> every score -> metrics -> rows with provenance -> atomic Parquet write.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import random
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import benchmark
from benchmark.backbones import Backbone, BackboneIdentity, load_backbone, remember_identity, remembered_identity
from benchmark.data import LoadedDataset, load_dataset
from benchmark.encoders import view_kind
from benchmark.errors import OodbenchError
from benchmark.features import default_cache_dir, extract_features, text_features
from benchmark.fewshot import FewShotSplit, fewshot_split
from benchmark.metrics import id_accuracy, ood_metrics
from benchmark.output_cache import DatasetOutputs, OutputCache, OutputKey, code_fingerprint
from benchmark.progress import Progress
from benchmark.results import run_stem, write_results
from benchmark.suites import SUITES, SuiteSpec
from methods import load_methods
from methods.base import (
    METHODS,
    FeatureBatch,
    FitData,
    Method,
    MethodContext,
    canonical_config,
    config_hash,
    make_config,
)
from methods.scores import SCORES, Score

PREDICT_BATCH = 4096
PACKAGES = ("torch", "torchvision", "open_clip_torch", "numpy", "datasets", "pyarrow", "pandas", "scikit-learn")


@dataclass
class RunSpec:
    """Everything that identifies a run and how to execute it."""

    suite: str
    backbone: str
    method: str
    method_config: dict[str, Any] = field(default_factory=dict)
    scores: list[str] | None = None  # None: every registered score
    shots: int = 0
    seed: int = 1
    device: str = "auto"
    precision: str = "fp32"
    batch_size: int = 256
    num_workers: int = 0
    cache_dir: Path | None = None
    data_root: Path | None = None
    reuse_outputs: bool = True  # False: refit even if this run's outputs are cached (oodbench reproduce)


@dataclass
class RunResult:
    rows: pd.DataFrame
    path: Path | None
    cache_hits: dict[str, bool]
    seconds: dict[str, float]


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise OodbenchError(
            "--device cuda was asked for but torch sees no CUDA device; use --device cpu "
            "(or auto), or install a CUDA build of torch."
        )
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise OodbenchError(f"Unknown device {device!r}; use cpu, cuda, cuda:N or auto.")
    return torch.device(device)


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()}"


@functools.cache
def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            pass
    return out


@functools.cache
def git_commit() -> str:
    """The commit of the oodbench checkout ('-dirty' when it has local changes), or '' outside git; read once
    per process, since the code a process runs is the code it started with."""
    root = Path(benchmark.__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{sha}-dirty" if dirty else sha


def is_main_process() -> bool:
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def check_writable(folder: Path) -> None:
    """Fail before any work if results could not be written into `folder`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".oodbench-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise OodbenchError(
            f"Cannot write results into {folder}: {err.strerror}. Pass --out or --results-dir "
            f"pointing at a writable folder."
        ) from None


def _batch(
    features: np.ndarray,
    local: np.ndarray | None,
    idx: slice | np.ndarray,
    device: torch.device,
    views: np.ndarray | None = None,
) -> FeatureBatch:
    """Rows `idx` of the cached arrays as tensors; `views` [N, V, D] are already the batch's own rows."""

    def take(a: np.ndarray | None) -> torch.Tensor | None:
        return None if a is None else torch.from_numpy(np.asarray(a[idx], dtype=np.float32)).to(device)

    v = None if views is None else torch.from_numpy(np.asarray(views, dtype=np.float32)).to(device)
    return FeatureBatch(
        global_=take(features), local=take(local), views=None if v is None else v.transpose(0, 1).contiguous()
    )


def views_needed(method_cls: type[Method], config: object) -> int:
    """How many cached augmented views of the pool `fit` reads (the config's `views`), 0 for none."""
    if "views" not in method_cls.needs:
        return 0
    if not hasattr(config, "views"):
        raise OodbenchError(
            f"{method_cls.__name__} declares needs={{'views'}} but its Config has no `views` field; "
            f"add `views: int` (the number of cached augmented views per image)."
        )
    return int(config.views)


@torch.inference_mode()
def _predict_and_score(
    method: Method, features: np.ndarray, local: np.ndarray | None, device: torch.device, scores: list[Score]
) -> DatasetOutputs:
    """Logits and every score of one test set, batch by batch: local logits [N, P, C] are never held whole."""
    logits, values = [], {s.name: [] for s in scores}
    for start in range(0, len(features), PREDICT_BATCH):
        out = method.predict(_batch(features, local, slice(start, start + PREDICT_BATCH), device))
        logits.append(out.logits.float().cpu().numpy())
        for s in scores:
            values[s.name].append(s(out).double().cpu().numpy())
    return DatasetOutputs(np.concatenate(logits), {k: np.concatenate(v) for k, v in values.items()})


class Harness:
    """Runs RunSpecs; holds loaded backbones and datasets so that a sweep loads each once."""

    def __init__(self, *, progress: Progress | None = None) -> None:
        self.progress = progress or Progress(enabled=False)
        self._backbones: dict[tuple[str, str], Backbone] = {}
        self._datasets: dict[str, LoadedDataset] = {}

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
        if name not in self._datasets:
            self._datasets[name] = load_dataset(suite.datasets()[name], data_root=data_root)
        return self._datasets[name]

    def run(self, spec: RunSpec, *, out: Path | None = None, results_dir: Path | None = None) -> RunResult:
        t0 = time.perf_counter()
        seconds: dict[str, float] = {}
        load_methods()
        suite = SUITES.get(spec.suite)
        method_cls = METHODS.get(spec.method)
        score_names = list(dict.fromkeys(spec.scores)) if spec.scores else SCORES.names()
        scores = [SCORES.get(s) for s in score_names]
        config = make_config(method_cls, spec.method_config)
        shots = spec.shots if method_cls.trains else 0
        if method_cls.trains and spec.shots < 1:
            raise OodbenchError(f"Method {spec.method!r} trains on a few-shot split: pass --shots (1, 2, 4, 8 or 16).")
        if not method_cls.trains and spec.shots not in (0,):
            raise OodbenchError(
                f"Method {spec.method!r} is zero-shot and uses no training images; drop --shots (or pass --shots 0)."
            )
        cfg_json = canonical_config(config)
        cfg_hash = config_hash(spec.method, cfg_json)
        run_id = uuid.uuid4().hex
        if out is None:
            results_dir = Path(results_dir or "results")
            stem = run_stem(
                suite=suite.name,
                backbone=spec.backbone,
                method=spec.method,
                config_hash=cfg_hash,
                shots=shots,
                seed=spec.seed,
            )
            out = results_dir / f"{stem}__{run_id[:8]}.parquet"
        if out.exists():
            raise OodbenchError(f"{out} already exists; results are never overwritten. Choose another --out.")
        if is_main_process():
            check_writable(out.parent)
        device = resolve_device(spec.device)
        cache_dir = Path(spec.cache_dir) if spec.cache_dir else default_cache_dir()

        identity = self.identity(spec.backbone, device, cache_dir)
        test_sets = [suite.id_test] + [name for _, name in suite.ood_sets()]
        dataset_hashes = {name: self.dataset(name, suite, spec.data_root).list_sha256 for name in test_sets}
        split = None
        if method_cls.trains:
            pool = self.dataset(suite.pool, suite, spec.data_root)
            dataset_hashes[suite.pool] = pool.list_sha256
            split = fewshot_split(pool.labels, shots=shots, seed=spec.seed, pool_sha256=pool.list_sha256)
        seconds["load"] = time.perf_counter() - t0

        output_key = OutputKey(
            arch=identity.arch,
            weights_sha256=identity.weights_sha256,
            preprocess=identity.preprocess_id,
            precision=spec.precision,
            suite=suite.name,
            suite_version=suite.version,
            dataset_hashes=json.dumps(dataset_hashes, sort_keys=True),
            method=spec.method,
            config_hash=cfg_hash,
            shots=shots,
            seed=spec.seed,
            fewshot_hash=split.sha256 if split else "",
            code=code_fingerprint(*_outside_files(method_cls)),
        )
        output_cache = OutputCache(cache_dir)
        outputs = output_cache.load(output_key, datasets=test_sets, scores=score_names) if spec.reuse_outputs else None
        cache_hits: dict[str, bool] = {"outputs": outputs is not None}
        if outputs is None:
            outputs = self._compute(
                spec, suite, method_cls, config, scores, split, device, cache_dir, cache_hits, seconds
            )
            if is_main_process():
                output_cache.save(output_key, outputs)

        t = time.perf_counter()
        acc = id_accuracy(outputs[suite.id_test].logits, self.dataset(suite.id_test, suite, spec.data_root).labels)
        meta = {
            "suite": suite.name,
            "suite_version": suite.version,
            "backbone": spec.backbone,
            "method": spec.method,
            "method_config": cfg_json,
            "config_hash": cfg_hash,
            "shots": shots,
            "seed": spec.seed,
            "id_dataset": suite.id_test,
            "run_id": run_id,
            "created_at": pd.Timestamp(datetime.now(timezone.utc)),
            "oodbench_version": benchmark.__version__,
            "git_commit": git_commit(),
            "package_versions": json.dumps(package_versions(), sort_keys=True),
            "device": device_description(device),
            "weights_sha256": identity.weights_sha256,
            "fewshot_hash": output_key.fewshot_hash,
            "dataset_hashes": output_key.dataset_hashes,
            "precision": spec.precision,
        }
        rows = []
        for s in scores:
            for group, name in suite.ood_sets():
                m = ood_metrics(outputs[suite.id_test].scores[s.name], outputs[name].scores[s.name])
                rows.append(
                    {
                        **meta,
                        "score": s.name,
                        "ood_dataset": name,
                        "ood_group": group,
                        "fpr95": m.fpr95,
                        "auroc": m.auroc,
                        "aupr_in": m.aupr_in,
                        "aupr_out": m.aupr_out,
                        "id_acc": acc,
                        "n_id": m.n_id,
                        "n_ood": m.n_ood,
                    }
                )
        frame = pd.DataFrame(rows)
        seconds["score"] = time.perf_counter() - t
        if is_main_process():
            path: Path | None = write_results(frame, out)
        else:  # under torchrun every rank computes the same rows; rank 0 writes them
            path = None
        seconds["total"] = time.perf_counter() - t0
        return RunResult(rows=frame, path=path, cache_hits=cache_hits, seconds=seconds)

    def _compute(
        self,
        spec: RunSpec,
        suite: SuiteSpec,
        method_cls: type[Method],
        config: object,
        scores: list[Score],
        split: FewShotSplit | None,
        device: torch.device,
        cache_dir: Path,
        cache_hits: dict[str, bool],
        seconds: dict[str, float],
    ) -> dict[str, DatasetOutputs]:
        """Features (cached), fit on the few-shot split, then logits and every score on every test set."""
        backbone = self.backbone(spec.backbone, device, cache_dir)
        need_local = any(s.needs_local for s in scores) or "local" in method_cls.needs

        def feats(name: str | LoadedDataset, kind: str = "global") -> np.ndarray:
            ds = self.dataset(name, suite, spec.data_root) if isinstance(name, str) else name
            f = extract_features(
                backbone,
                ds,
                cache_dir=cache_dir,
                kind=kind,
                precision=spec.precision,
                batch_size=spec.batch_size,
                num_workers=spec.num_workers,
                progress=self.progress,
            )
            cache_hits[f"{ds.spec.name}:{kind}"] = f.cache_hit
            return f.array

        t = time.perf_counter()
        test_sets = [suite.id_test] + [name for _, name in suite.ood_sets()]
        encoded = {name: (feats(name), feats(name, "local") if need_local else None) for name in test_sets}
        seconds["features"] = time.perf_counter() - t

        generator = seed_everything(spec.seed)
        classnames, templates = suite.class_names(data_root=spec.data_root), suite.prompt_templates()
        context = MethodContext(
            backbone=backbone,
            classnames=classnames,
            templates=templates,
            text_features=text_features(backbone, classnames, templates, cache_dir=cache_dir),
            device=device,
            generator=generator,
            seed=spec.seed,
        )
        method = method_cls(config=config, context=context)
        t = time.perf_counter()
        if split is not None:
            pool = self.dataset(suite.pool, suite, spec.data_root)
            pool_g = feats(suite.pool)
            pool_l = feats(suite.pool, "local") if "local" in method_cls.needs else None
            n_views = views_needed(method_cls, config)
            # augmented views only of the split's images (not the whole pool: ImageNet's is 1.28M images)
            pool_v = feats(pool.subset(split.train, tag=split.sha256[:16]), view_kind(n_views)) if n_views else None
            labels = torch.from_numpy(pool.labels).to(device)
            data = FitData(
                train=_batch(pool_g, pool_l, split.train, device, pool_v),
                labels=labels[split.train],
                val=_batch(pool_g, pool_l, split.val, device),
                val_labels=labels[split.val],
                shots=split.shots,
            )
            with torch.enable_grad():
                method.fit(data)
        seconds["fit"] = time.perf_counter() - t
        t = time.perf_counter()
        outputs = {name: _predict_and_score(method, g, loc, device, scores) for name, (g, loc) in encoded.items()}
        seconds["predict"] = time.perf_counter() - t
        return outputs


def _outside_files(method_cls: type[Method]) -> list[Path]:
    """The source file of a method that lives outside oodbench (--method-file or a plugin), if any."""
    import inspect

    try:
        path = Path(inspect.getfile(method_cls)).resolve()
    except (TypeError, OSError):
        return []
    inside = Path(benchmark.__file__).resolve().parents[1]
    return [] if inside in path.parents else [path]


def run(
    spec: RunSpec, *, out: Path | None = None, results_dir: Path | None = None, progress: Progress | None = None
) -> RunResult:
    """Run one (suite, backbone, method + config, shots, seed) and write its Parquet file."""
    return Harness(progress=progress).run(spec, out=out, results_dir=results_dir)
