"""The method interface every method implements (see docs/adding-a-method.md).

What the harness owns: the device, the data, the feature cache, the seed, the few-shot split and
the order in which test images are shown. What a method owns: its hyperparameters (a frozen
dataclass `Config` whose defaults follow the authors' code, docs/fidelity.md) and how it turns image
features into class logits.

Lifecycle of one run:
1. `Method(config=..., context=...)`: the context holds the frozen backbone, class names, the
   zero-shot text classifier, a way to build a classifier from other templates, the device and a
   seeded torch.Generator.
2. `fit(data)` (few-shot methods only): `data` holds features of the few-shot split and, separately,
   of a validation part of the pool for any hyperparameter choice. Nothing of the ID test split or
   of any OOD set ever reaches `fit`. A method that tunes the encoders (`needs={"images"}`, a subclass of
   `EncoderTuner`) also gets the split as images (`data.images`) and a trainable copy of the backbone
   in its context; after `fit` the harness re-encodes the test sets with `tuned_model()`.
3. `predict(batch)`: called on fixed-size batches of a seeded interleaving of every test image (ID
   test and all OOD sets mixed, no dataset boundaries); returns a MethodOutput every score reads.
   A test-time method may update its state from call to call; the others must not.

This module imports no torch at import time, so that describing methods stays cheap.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from benchmark.errors import OodbenchError
from benchmark.protocols import EXTRA_DATA, FEW_SHOT, LANGUAGE_MODEL, PROTOCOLS, TEST_TIME, USES, ZERO_SHOT  # noqa: F401
from benchmark.registry import Registry

if TYPE_CHECKING:
    import torch

    from benchmark.backbones import Backbone
    from benchmark.splitimages import SplitImages
    from benchmark.tuned import StageCache, TunedWeights

NEEDS = ("local", "views", "images", "local_width")  # extra inputs a method may declare
FAMILIES = ("imagenet", "cub200", "stanford-cars", "food101", "oxford-pets", "demo")


@dataclass(frozen=True)
class MethodOutput:
    """What scores read. `logits` [N, C] are the method's ID-class logits (already multiplied by its
    logit scale); `logits / logit_scale` are the cosine similarities MCM softmaxes. `local_logits`
    [N, P, C] (patch tokens against the classes, same scale) is set when the batch carries patch
    features. `extra` holds further per-image arrays [N, ...] that a method's own scores read
    (for example "neg_logits" [N, M] of negative-label methods); their names are in `provides`."""

    logits: torch.Tensor
    logit_scale: float
    local_logits: torch.Tensor | None = None
    extra: Mapping[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class FeatureBatch:
    """Cached features of a batch of images: `global_` [N, D] (unnormalised, as the image encoder
    returns them), `local` [N, P, D] patch tokens in the joint space when requested (before the
    projection, [N, P, width], for methods that need "local_width"), `views`
    [V, N, D] cached augmented views (only in FitData), and `local_views` [V, N, P, D] the patch tokens
    of the same views for methods that need both "local" and "views" (only in FitData; float16 on the
    CPU, since on ImageNet at 16 shots they take about 32 GB: take the rows you need to the device)."""

    global_: torch.Tensor
    local: torch.Tensor | None = None
    views: torch.Tensor | None = None
    local_views: torch.Tensor | None = None


@dataclass(frozen=True)
class FitData:
    """The few-shot split (`train`, `labels`) and a disjoint validation part of the pool. For methods that
    tune the encoders, `images` is the same split as images (benchmark.splitimages.SplitImages: seeded,
    reshuffled batches of the size and augmentation the method asks for); None for the others."""

    train: FeatureBatch
    labels: torch.Tensor
    val: FeatureBatch
    val_labels: torch.Tensor
    shots: int
    images: SplitImages | None = None


@dataclass
class MethodContext:
    """What the harness hands a method. `text_classifier(templates)` is the zero-shot classifier [C, D]
    (L2-normalised prompt-ensemble means) for another template set, from the text-feature cache.

    For a method that tunes the encoders, `backbone` is a trainable deep copy (fp32 weights on the device;
    the shared frozen backbone is never handed out), `text_features` and `text_classifier` still come from
    the frozen one, and `stage_cache` keeps the tensors of fitted stages that several runs share."""

    backbone: Backbone
    classnames: list[str]
    text_features: torch.Tensor  # [C, D] zero-shot classifier of the suite's templates, L2-normalised
    device: torch.device
    generator: torch.Generator  # seeded by the harness from the run's seed
    text_classifier: Callable[[list[str]], torch.Tensor]
    templates: list[str] = field(default_factory=list)  # the suite's prompt templates (text_features' prompts)
    stage_cache: StageCache | None = None
    cache_dir: Path | None = None  # the feature-cache folder, for a method's own derived caches (mined word lists)


def param(
    default: Any, *, low: float | None = None, high: float | None = None, choices: tuple = (), doc: str = ""
) -> Any:
    """A Config field with bounds checked before any work: `n_ctx: int = param(16, low=1, high=64)`.

    Bounds are the budget a run may ask for (a config of 1e8 epochs is refused, not started)."""
    meta = {"low": low, "high": high, "choices": tuple(choices), "doc": doc}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class MethodConfig:
    """Base of every method's hyperparameters. Subclasses are frozen dataclasses with defaults."""


class Method(ABC):
    """Subclass, set `Config`, implement `predict` (and `fit` for few-shot methods), register with
    `@METHODS.register("name")`."""

    Config: ClassVar[type[MethodConfig]] = MethodConfig
    protocol: ClassVar[str] = FEW_SHOT  # zero-shot: never fitted; test-time: adapts over the test stream
    uses: ClassVar[frozenset[str]] = frozenset()  # "extra-data", "language-model"
    needs: ClassVar[frozenset[str]] = frozenset()  # "local" (patch tokens), "views" (augmented views), "images"
    provides: ClassVar[frozenset[str]] = frozenset({"local"})  # output parts beyond logits (see MethodOutput)
    paper: ClassVar[str] = ""
    # per ID-dataset family (SuiteSpec.family) overrides of Config defaults, where the authors set them per dataset
    family_defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    def __init__(self, *, config: MethodConfig, context: MethodContext) -> None:
        self.config = config
        self.ctx = context

    def fit(self, data: FitData) -> None:  # noqa: B027 - zero-shot methods keep this no-op
        """Adapt to the few-shot split. Runs under torch.enable_grad on the context's device."""

    @abstractmethod
    def predict(self, batch: FeatureBatch) -> MethodOutput:
        """Class logits for a batch of test features (runs under torch.inference_mode)."""


class EncoderTuner(Method):
    """A method that tunes the encoders. `fit` trains `self.ctx.backbone.model` (a trainable copy) on
    `data.images`; afterwards the harness re-encodes every test set with `tuned_model()`, caches those
    features under the sha256 of `tuned_weights().to_bytes()`, and hands `predict` the tuned features.
    `load_tuned_weights` makes the method what `fit` would have made it, from an entry's shipped weights."""

    needs: ClassVar[frozenset[str]] = frozenset({"images"})

    @abstractmethod
    def tuned_model(self) -> torch.nn.Module:
        """The tuned open_clip model (plain parameter names, adapters merged) the test sets are encoded with."""

    @abstractmethod
    def tuned_weights(self) -> TunedWeights:
        """What an entry ships to reproduce this fit without training (the trained tensors or a LoRA delta);
        the same fit gives the same tensors, so the same bytes and sha256."""

    @abstractmethod
    def load_tuned_weights(self, weights: TunedWeights) -> None:
        """Become the fitted method from `weights` (as `tuned_weights()` returned them), without fitting."""


def fits_split(method: type[Method]) -> bool:
    """True for methods that train on a few-shot split (they run with shots >= 1)."""
    return method.protocol == FEW_SHOT


def tunes_encoders(method: type[Method]) -> bool:
    """True for methods that train the encoders on images (their test features are re-encoded after fit)."""
    return "images" in method.needs


def check_declaration(name: str, method: type[Method]) -> None:
    """The class attributes of a registered method are well formed (checked when it is registered)."""
    problems = []
    if not (isinstance(method.Config, type) and issubclass(method.Config, MethodConfig)):
        problems.append("Config must be a frozen dataclass subclassing methods.base.MethodConfig")
    elif not dataclasses.is_dataclass(method.Config) or not method.Config.__dataclass_params__.frozen:
        problems.append("Config must be a frozen dataclass (@dataclass(frozen=True))")
    if method.protocol not in PROTOCOLS:
        problems.append(f"protocol must be one of {PROTOCOLS}, not {method.protocol!r}")
    if not set(method.uses) <= set(USES):
        problems.append(f"uses may hold {USES}, not {sorted(set(method.uses) - set(USES))}")
    if not set(method.needs) <= set(NEEDS):
        problems.append(f"needs may hold {NEEDS}, not {sorted(set(method.needs) - set(NEEDS))}")
    if not method.paper:
        problems.append("paper must cite the method's paper")
    if "images" in set(method.needs):
        if not issubclass(method, EncoderTuner):
            problems.append('a method that needs "images" must subclass methods.base.EncoderTuner')
        if method.protocol != FEW_SHOT:
            problems.append('a method that needs "images" trains on the few-shot split: protocol must be few-shot')
    elif issubclass(method, EncoderTuner):
        problems.append('an EncoderTuner must declare needs={"images", ...}')
    unknown = set(method.family_defaults) - set(FAMILIES)
    if unknown:
        problems.append(f"family_defaults keys must be suite families {FAMILIES}, not {sorted(unknown)}")
    if not problems:
        unbounded = unbounded_fields(method.Config)
        if unbounded:
            problems.append(
                f"every numeric Config field needs bounds, param(default, low=..., high=...) or choices; "
                f"{unbounded} have none"
            )
    if problems:
        raise OodbenchError(
            f"Method {name!r} ({method.__module__}.{method.__name__}) is declared wrongly: " + "; ".join(problems) + "."
        )


METHODS: Registry[type[Method]] = Registry("method", check=check_declaration)


# ---------------------------------------------------------------- configs


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """`value` as type `tp` (bool, int, float, str, tuple[...], X | None); OodbenchError when it is not one."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except OodbenchError as err:
                errors.append(str(err))
        raise OodbenchError(errors[0] if errors else f"Config key {key!r} takes {_type_name(tp)}, got {value!r}.")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise OodbenchError(f"Config key {key!r} takes a list, for example [0.5, 1.0]; got {value!r}.")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise OodbenchError(f"Config key {key!r} takes a list of {len(args)} values, got {value!r}.")
        return tuple(_coerce(v, a, key) for v, a in zip(value, args, strict=True))
    if tp is bool:
        if not isinstance(value, bool):
            raise OodbenchError(f"Config key {key!r} takes true/false, got {value!r}.")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise OodbenchError(f"Config key {key!r} takes a whole number, got {value!r}.")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise OodbenchError(f"Config key {key!r} takes a number, got {value!r}.")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise OodbenchError(f"Config key {key!r} takes text, got {value!r}.")
        return value
    raise OodbenchError(f"Config key {key!r} has a type oodbench cannot read from --config ({_type_name(tp)}).")


MAX_CONFIG_TEXT = 1000  # characters of one text value of a config (a prompt, a template, a hash)
MAX_CONFIG_ITEMS = 64  # values in one tuple-valued config field


def unbounded_fields(config_cls: type[MethodConfig]) -> list[str]:
    """The numeric fields (int or float, not bool) of a Config that declare neither both bounds nor choices."""
    out = []
    for name, (tp, f) in config_fields(config_cls).items():
        numeric = tp in (int, float) or (
            typing.get_origin(tp) is tuple and set(typing.get_args(tp)) <= {int, float, ...}
        )
        if (
            numeric
            and not f.metadata.get("choices")
            and (f.metadata.get("low") is None or f.metadata.get("high") is None)
        ):
            out.append(name)
    return out


def _check_bounds(key: str, value: Any, meta: Mapping[str, Any]) -> None:
    low, high, choices = meta.get("low"), meta.get("high"), meta.get("choices") or ()
    values = value if isinstance(value, tuple) else (value,)
    if isinstance(value, tuple) and len(value) > MAX_CONFIG_ITEMS:
        raise OodbenchError(f"Config key {key!r} has {len(value)} values; at most {MAX_CONFIG_ITEMS} are allowed.")
    for v in values:
        if isinstance(v, str) and len(v) > MAX_CONFIG_TEXT:
            raise OodbenchError(
                f"Config key {key!r} is {len(v):,} characters long; at most {MAX_CONFIG_TEXT} are allowed."
            )
        if choices and v not in choices:
            raise OodbenchError(f"Config key {key!r} must be one of {list(choices)}, got {v!r}.")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if v != v:  # NaN
                raise OodbenchError(f"Config key {key!r} is NaN; give a number.")
            if (low is not None and v < low) or (high is not None and v > high):
                lo = "-inf" if low is None else low
                hi = "inf" if high is None else high
                raise OodbenchError(
                    f"Config key {key!r} = {v!r} is outside its allowed range [{lo}, {hi}] "
                    f"(a budget that keeps runs finite; `oodbench list methods` shows the defaults)."
                )


def config_fields(config_cls: type[MethodConfig]) -> dict[str, tuple[Any, dataclasses.Field]]:
    """Field name -> (resolved type, dataclasses.Field) of a Config class."""
    hints = typing.get_type_hints(config_cls)
    return {f.name: (hints[f.name], f) for f in dataclasses.fields(config_cls)}


def make_config(
    method: type[Method], overrides: Mapping[str, Any] | None = None, *, family: str | None = None
) -> MethodConfig:
    """The method's Config: its defaults, then its `family_defaults[family]`, then `overrides`, each value
    converted to the field's type and checked against the field's bounds. Unknown keys are errors."""
    fields = config_fields(method.Config)
    values: dict[str, Any] = {}
    layers = [
        (f"family_defaults[{family!r}] of this method", dict(method.family_defaults.get(family or "", {}))),
        ("--config", dict(overrides or {})),
    ]
    for where, layer in layers:
        unknown = sorted(set(layer) - set(fields))
        if unknown:
            raise OodbenchError(
                f"Unknown config key(s) {unknown} in {where}; this method's keys are {sorted(fields)} "
                f"(`oodbench list methods` shows each method's defaults)."
            )
        for key, value in layer.items():
            values[key] = _coerce(value, fields[key][0], key)
    config = dataclasses.replace(method.Config(), **values)
    for key, (_, f) in fields.items():
        _check_bounds(key, getattr(config, key), f.metadata)
    return config


def _jsonable(value: Any) -> Any:
    return [_jsonable(v) for v in value] if isinstance(value, tuple) else value


def canonical_config(config: MethodConfig) -> str:
    """Canonical JSON of a config: sorted keys, no spaces, tuples as lists. `make_config(method,
    json.loads(canonical_config(c)))` gives `c` back; its sha256 is the run's config_hash."""
    data = {f.name: _jsonable(getattr(config, f.name)) for f in dataclasses.fields(config)}
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def config_hash(method: str, config_json: str) -> str:
    return hashlib.sha256(f"{method}\n{config_json}".encode()).hexdigest()


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Unit-length rows in float32 (the one normalisation every method and score uses)."""
    import torch

    return torch.nn.functional.normalize(x.float(), dim=-1)
