"""The method interface every method implements (see docs/adding-a-method.md).

What the harness owns: the device, the data, the feature cache, the seed and the few-shot split.
What a method owns: its hyperparameters (a frozen dataclass `Config` whose defaults follow its
paper) and how it turns image features into class logits.

Lifecycle of one run:
1. `Method(config=..., context=...)`: the context holds the frozen backbone, class names, prompt
   templates, the zero-shot text classifier, the device and a seeded torch.Generator.
2. `fit(data)`: `data` holds features of the few-shot split and, separately, of a validation part
   of the pool for any hyperparameter choice. Nothing of the ID test split or any OOD set ever
   reaches `fit`. Zero-shot methods (`trains = False`) are not fitted.
3. `predict(batch)`: called on batches of cached test features (ID test, then each OOD set);
   returns a MethodOutput whose `logits` every score reads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from benchmark.backbones import Backbone
from benchmark.errors import OodbenchError
from benchmark.registry import Registry


@dataclass(frozen=True)
class MethodOutput:
    """What scores read. `logits` [N, C] are the method's class logits (already multiplied by its
    logit scale); `logits / logit_scale` are the cosine similarities MCM softmaxes. `local_logits`
    [N, P, C] (patch tokens against the classes, same scale) is set only when a score asks for it."""

    logits: torch.Tensor
    logit_scale: float
    local_logits: torch.Tensor | None = None


@dataclass(frozen=True)
class FeatureBatch:
    """Cached features of a batch of images: `global_` [N, D] (unnormalised, as the image encoder
    returns them) and, when requested, `local` [N, P, D] patch tokens in the joint space."""

    global_: torch.Tensor
    local: torch.Tensor | None = None
    views: torch.Tensor | None = None  # [V, N, D] augmented views, only in FitData


@dataclass(frozen=True)
class FitData:
    """The few-shot split (`train`, `labels`) and a disjoint validation part of the pool."""

    train: FeatureBatch
    labels: torch.Tensor
    val: FeatureBatch
    val_labels: torch.Tensor
    shots: int


@dataclass
class MethodContext:
    backbone: Backbone
    classnames: list[str]
    templates: list[str]
    text_features: torch.Tensor  # [C, D] zero-shot classifier, L2-normalised
    device: torch.device
    generator: torch.Generator  # seeded by the harness from the run's seed
    seed: int


@dataclass(frozen=True)
class MethodConfig:
    """Base of every method's hyperparameters. Subclasses are frozen dataclasses with defaults."""


class Method(ABC):
    """Subclass, set `Config`, implement `predict` (and `fit` when `trains`), register with
    `@METHODS.register("name")`."""

    Config: ClassVar[type[MethodConfig]] = MethodConfig
    trains: ClassVar[bool] = True  # False: zero-shot, run with shots=0 and never fitted
    # feature kinds beyond "global" that fit/predict read: "local" (patch tokens), "views" (augmented)
    needs: ClassVar[frozenset[str]] = frozenset()
    paper: ClassVar[str] = ""

    def __init__(self, *, config: MethodConfig, context: MethodContext) -> None:
        self.config = config
        self.ctx = context

    def fit(self, data: FitData) -> None:  # noqa: B027 - zero-shot methods keep this no-op
        """Adapt to the few-shot split. Runs under torch.enable_grad on the context's device."""

    @abstractmethod
    def predict(self, batch: FeatureBatch) -> MethodOutput:
        """Class logits for a batch of test features (runs under torch.inference_mode)."""


METHODS: Registry[type[Method]] = Registry("method")


def make_config(method: type[Method], overrides: dict[str, Any] | None) -> MethodConfig:
    """The method's Config with `overrides` applied; unknown keys and wrong types are errors."""
    overrides = dict(overrides or {})
    fields = {f.name: f for f in dataclasses.fields(method.Config)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise OodbenchError(
            f"Unknown config key(s) {unknown} for this method; its keys are {sorted(fields)} "
            f"(`oodbench list methods` shows each method's defaults)."
        )
    defaults = method.Config()
    for k, v in list(overrides.items()):
        ref = getattr(defaults, k)
        if isinstance(ref, bool) and not isinstance(v, bool):
            raise OodbenchError(f"Config key {k!r} takes true/false, got {v!r}.")
        if isinstance(ref, float) and isinstance(v, int) and not isinstance(v, bool):
            overrides[k] = float(v)
        elif ref is not None and not isinstance(v, type(ref)):
            raise OodbenchError(f"Config key {k!r} takes a {type(ref).__name__}, got {v!r}.")
    return dataclasses.replace(defaults, **overrides)


def canonical_config(config: MethodConfig) -> str:
    """Canonical JSON of a config: sorted keys, no spaces. Its sha256 is the run's config_hash."""
    return json.dumps(dataclasses.asdict(config), sort_keys=True, separators=(",", ":"))


def config_hash(method: str, config_json: str) -> str:
    return hashlib.sha256(f"{method}\n{config_json}".encode()).hexdigest()


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1)
