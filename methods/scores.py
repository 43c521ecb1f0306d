"""OOD scores: how OOD-ness is read off a method's output. Every score is higher-is-more-ID.

A score is a NumPy function of a run's cached outputs (`ScoreInput`: the ID-class logits, the logit
scale, the method's extra arrays and, for scores that read patch tokens, a per-image reduction of the
patch logits computed while predicting). So a run computes its outputs once and any set of scores is
read from them afterwards without the model. Scores take named parameters (a temperature, GL-MCM's
lambda); their defaults follow the reference code (docs/fidelity.md) and the parameters of every
result row are stored in its `score_config`. On the command line a variant is `energy:T=0.01`
(several parameters: `gl_mcm:T=1:lambda_local=0.5`).

A score declares what it `requires` beyond the logits ("local" for patch tokens, or the name of an
array in MethodOutput.extra); it runs only on methods whose `provides` covers that.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmark.errors import OodbenchError
from benchmark.registry import Registry, suggest

if TYPE_CHECKING:
    import torch

ParamValue = float | bool | str


@dataclass(frozen=True)
class ScoreInput:
    """A dataset's outputs as scores read them: `logits` [N, C] (scaled by `logit_scale`), `extra` arrays
    [N, ...] named by the method, and `local` [N], this score's reduction of the patch-token logits."""

    logits: np.ndarray
    logit_scale: float
    extra: Mapping[str, np.ndarray] = field(default_factory=dict)
    local: np.ndarray | None = None

    def cosine(self) -> np.ndarray:
        return self.logits / self.logit_scale


LocalReduce = Callable[..., "torch.Tensor"]  # (local_logits [B, P, C], logit_scale, **params) -> [B]


@dataclass(frozen=True)
class Score:
    name: str
    fn: Callable[..., np.ndarray]
    defaults: Mapping[str, ParamValue] = field(default_factory=dict)
    requires: frozenset[str] = frozenset()
    local: LocalReduce | None = None  # set for scores that read patch tokens ("local" in requires)
    description: str = ""

    def __call__(self, inputs: ScoreInput, params: Mapping[str, ParamValue] | None = None) -> np.ndarray:
        values = np.asarray(self.fn(inputs, **{**self.defaults, **(params or {})}), dtype=np.float64)
        if values.shape != (inputs.logits.shape[0],):
            raise OodbenchError(
                f"Score {self.name!r} returned shape {values.shape} for {inputs.logits.shape[0]} "
                f"images; a score gives one value per image."
            )
        return values

    @property
    def params(self) -> Mapping[str, ParamValue]:
        """The score's parameters with their defaults (the reference code's values, docs/fidelity.md)."""
        return self.defaults

    def applies_to(self, provides: frozenset[str]) -> bool:
        """True when a method whose output provides `provides` has everything this score reads."""
        return self.requires <= provides


def _check_score(name: str, score: Score) -> None:
    if "local" in score.requires and score.local is None:
        raise OodbenchError(f"Score {name!r} requires 'local' but declares no local reduction.")
    for key, value in score.defaults.items():
        if not isinstance(value, (float, bool, str)):
            raise OodbenchError(
                f"Score {name!r} parameter {key!r} must default to a float, bool or str, not {value!r}."
            )


SCORES: Registry[Score] = Registry("score", check=_check_score)


def register_score(
    name: str,
    *,
    params: Mapping[str, ParamValue] | None = None,
    requires: frozenset[str] = frozenset(),
    local: LocalReduce | None = None,
) -> Callable:
    """Declare a score: `@register_score("energy", params={"T": 1.0})` on `fn(inputs, *, T) -> [N]`."""

    def deco(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        doc = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        needs = frozenset(requires) | ({"local"} if local is not None else set())
        SCORES.add(
            name, Score(name=name, fn=fn, defaults=dict(params or {}), requires=needs, local=local, description=doc)
        )
        return fn

    return deco


# ---------------------------------------------------------------- a score with its parameters


@dataclass(frozen=True)
class ScoreSpec:
    """One score with every parameter set (defaults filled in): what a run computes and a row records."""

    name: str
    params: tuple[tuple[str, ParamValue], ...] = ()

    @property
    def score(self) -> Score:
        return SCORES.get(self.name)

    @property
    def config(self) -> dict[str, ParamValue]:
        return dict(self.params)

    @property
    def config_json(self) -> str:
        """Canonical JSON of the parameters: the `score_config` column."""
        return json.dumps(self.config, sort_keys=True, separators=(",", ":"))

    @property
    def is_default(self) -> bool:
        return self.config == dict(self.score.defaults)

    @property
    def label(self) -> str:
        """`energy`, or `energy:T=0.01` for a variant: what users type and tables show."""
        changed = [(k, v) for k, v in self.params if self.score.defaults.get(k) != v]
        return self.name + "".join(f":{k}={_format(v)}" for k, v in changed)


def _format(value: ParamValue) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _parse_value(text: str, default: ParamValue, *, where: str) -> ParamValue:
    if isinstance(default, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise OodbenchError(f"{where} takes true or false, got {text!r}.")
    if isinstance(default, float):
        try:
            value = float(text)
        except ValueError:
            raise OodbenchError(f"{where} takes a number, got {text!r}.") from None
        if not np.isfinite(value):
            raise OodbenchError(f"{where} must be a finite number, got {text!r}.")
        return value
    return text


def score_spec(name: str, params: Mapping[str, Any] | None = None) -> ScoreSpec:
    """A ScoreSpec from a name and parameter overrides (values as text or already typed)."""
    score = SCORES.get(name)
    values = dict(score.defaults)
    for key, value in (params or {}).items():
        if key not in score.defaults:
            known = ", ".join(sorted(score.defaults)) or "none"
            raise OodbenchError(
                f"Score {name!r} has no parameter {key!r}.{suggest(key, list(score.defaults))} Its parameters: {known}."
            )
        where = f"Parameter {key!r} of score {name!r}"
        values[key] = _parse_value(str(value), score.defaults[key], where=where)
    return ScoreSpec(name=name, params=tuple(sorted(values.items())))


def parse_score(text: str) -> ScoreSpec:
    """`energy` or `gl_mcm:T=0.5:lambda_local=0.5` -> ScoreSpec."""
    name, *pairs = [p.strip() for p in text.strip().split(":")]
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise OodbenchError(
                f"Score {text!r}: parameters are written name:key=value (for example energy:T=0.01), got {pair!r}."
            )
        params[key.strip()] = value.strip()
    return score_spec(name, params)


def spec_from_row(name: str, score_config: str) -> ScoreSpec:
    """The ScoreSpec a result row describes (its `score` and `score_config` columns)."""
    try:
        params = json.loads(score_config) if score_config else {}
    except ValueError:
        raise OodbenchError(f"score_config {score_config!r} of score {name!r} is not JSON.") from None
    return score_spec(name, params)


def score_label(name: str, score_config: str | None) -> str:
    """How tables show a row's score: its name, with any parameter that differs from today's default
    (`energy:T=0.01`). A score this oodbench does not know keeps its raw configuration."""
    try:
        return spec_from_row(name, score_config or "").label
    except OodbenchError:
        return f"{name} {score_config}" if score_config else name


def labelled(rows: Any) -> Any:
    """A results DataFrame with a `score_label` column (see score_label)."""
    configs = rows["score_config"] if "score_config" in rows.columns else [""] * len(rows)
    pairs = {(n, c) for n, c in zip(rows["score"], configs, strict=True)}
    labels = {p: score_label(*p) for p in pairs}
    return rows.assign(score_label=[labels[(n, c)] for n, c in zip(rows["score"], configs, strict=True)])


# ---------------------------------------------------------------- the scores


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _logsumexp(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=-1)
    return m + np.log(np.exp(x - m[..., None]).sum(axis=-1))


def _cosine(out: ScoreInput) -> np.ndarray:
    return out.cosine().astype(np.float64)


# MCM's evaluation (deeplearning-wisc/MCM utils/detection_util.py:L225-248) computes every score from the
# cosine similarities of normalised image and text features divided by T (default 1, eval_ood_detection.py:L31),
# never from CLIP's logit-scaled logits; docs/fidelity.md has one table per score. A score of the logits
# instead is the same score at T = 1 / logit_scale (energy and max_logit then differ by the constant factor
# logit_scale, which no metric sees).


@register_score("mcm", params={"T": 1.0})
def mcm(out: ScoreInput, *, T: float) -> np.ndarray:  # noqa: N803 - the papers' name for the temperature
    """MCM (Ming et al., NeurIPS 2022): max softmax of cosine similarities / T."""
    return _softmax(_cosine(out) / T).max(axis=-1)


@register_score("msp", params={"T": 1.0})
def msp(out: ScoreInput, *, T: float) -> np.ndarray:  # noqa: N803
    """Maximum softmax probability of the logit-scaled logits / T (Hendrycks & Gimpel, 2017)."""
    return _softmax(out.logits.astype(np.float64) / T).max(axis=-1)


@register_score("energy", params={"T": 1.0})
def energy(out: ScoreInput, *, T: float) -> np.ndarray:  # noqa: N803
    """Negative free energy T * logsumexp(cosine / T) (Liu et al., 2020, as MCM's evaluation computes it)."""
    return T * _logsumexp(_cosine(out) / T)


@register_score("max_logit")
def max_logit(out: ScoreInput) -> np.ndarray:
    """Maximum cosine similarity over the classes (Hendrycks et al., 2022, as MCM's evaluation computes it)."""
    return _cosine(out).max(axis=-1)


@register_score("entropy", params={"T": 1.0})
def neg_entropy(out: ScoreInput, *, T: float) -> np.ndarray:  # noqa: N803
    """Negated entropy (natural log) of softmax(cosine / T): confident = more ID."""
    p = _softmax(_cosine(out) / T)
    return (p * np.log(np.clip(p, 1e-300, None))).sum(axis=-1)


def _local_mcm(local_logits: torch.Tensor, logit_scale: float, *, T: float, **_: Any) -> torch.Tensor:  # noqa: N803
    """Per image: the largest MCM over its patch tokens (max over patches and classes of softmax(cos / T))."""
    import torch

    probs = torch.softmax(local_logits.float() / (logit_scale * T), dim=-1)
    return probs.amax(dim=(-1, -2))


@register_score("gl_mcm", params={"T": 1.0, "lambda_local": 1.0}, local=_local_mcm)
def gl_mcm(out: ScoreInput, *, T: float, lambda_local: float) -> np.ndarray:  # noqa: N803
    """GL-MCM (Miyai et al., 2023): MCM of the global feature plus lambda_local x the largest MCM over patch
    tokens (lambda_local 1, the code's default and LoCoOp's; GL-MCM's ImageNet script passes 0.5)."""
    if out.local is None:
        raise OodbenchError(
            "gl_mcm needs the patch-token reduction, but the outputs carry none; the method's "
            "predict must fill MethodOutput.local_logits when the batch carries `local` features."
        )
    return mcm(out, T=T) + lambda_local * out.local
