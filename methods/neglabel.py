"""NegLabel (Jiang et al., ICLR 2024): zero-shot OOD detection against negative labels mined from WordNet.

The ID classes are scored against thousands of WordNet nouns and adjectives that lie far from every ID
class name; an image whose softmax mass goes to the negative labels is OOD. The method outputs the ID
logits (what the shared scores read) and the negative-label logits (`extra["neg_logits"]`); the
`neglabel` score registered here is the paper's grouped score. Every default follows the authors' code
(XueJiang16/NegLabel; docs/fidelity-negatives.md gives file and line).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from benchmark.errors import OodbenchError
from methods.base import METHODS, ZERO_SHOT, FeatureBatch, Method, MethodConfig, MethodOutput, l2_normalize, param
from methods.scores import ScoreInput, register_score
from methods.shared.negative_labels import (
    NegativeLabels,
    backbone_key,
    cached_negatives,
    candidates,
    check_pin,
    encode_words,
)
from methods.shared.negatives import (
    group_permutation,
    grouped_id_probability,
    grouped_log_ood_mass,
    mine_negatives,
    prompts,
)
from methods.shared.wordnet import LEXICOGRAPHER_FILES, NEGLABEL_EXCLUDED, Vocabulary, vocabulary

LEXICOGRAPHER_NAMES = tuple(LEXICOGRAPHER_FILES.values())
SCORE_CHUNK = 8192  # images per block of the grouped score (keeps float64 copies of the logits small)


@dataclass(frozen=True)
class NegLabelConfig(MethodConfig):
    # Defaults: XueJiang16/NegLabel custom_config/clip.py and mmcls/models/classifiers/multi_modal.py.
    # lexicographer files left out of the candidates: the reference's word lists have no animal or food file
    excluded_files: tuple[str, ...] = param(tuple(sorted(NEGLABEL_EXCLUDED)), choices=LEXICOGRAPHER_NAMES)
    prompt_set: str = param("neglabel", choices=("neglabel", "csp", "adaneg"))  # methods/shared/negative_prompts.json
    drop_id_classnames: bool = False  # pos_topk=None: ID class names stay candidates
    percentile: float = param(0.95, low=0.0, high=1.0)  # NegMining's quantile of the similarities to ID labels
    quantile_rule: str = param("linear", choices=("linear", "index"))  # torch.quantile's interpolation
    ratio: float = param(0.15, low=1e-6, high=1.0)  # share of each part of speech kept (neg_topk)
    logit_scale: float = param(100.0, low=0.0, high=1000.0)  # fixed 100 in the reference; 0 = the backbone's own
    max_candidates: int = param(0, low=0, high=10_000_000)  # oodbench: first N words per part of speech, 0 = all
    negatives_sha256: str = ""  # oodbench: pin the mined label list (its sha256); empty accepts any


def resolve_scale(configured: float, backbone_scale: float) -> float:
    """The logit scale a negative-label method multiplies cosines by: its configured value, or the
    backbone's own when the config says 0."""
    return float(configured) if configured > 0 else float(backbone_scale)


def mine_pool(
    method: Method,
    *,
    name: str,
    vocabulary_sha256: str,
    nouns: list[str],
    adjectives: list[str],
    noun_templates: list[str],
    adjective_templates: list[str],
    settings: dict,
    exclude_above: float | None = None,
) -> NegativeLabels:
    """NegLabel's NegMining on a candidate pool (CSP's too, with its prompts and cap): every noun and
    adjective encoded with its templates, then the first int(ratio n) of each part of speech by increasing
    similarity quantile to the ID labels (`method.id_text`), nouns first. Cached (see negative_labels)."""
    c, backbone = method.config, method.ctx.backbone
    key = {
        "method": name,
        "vocabulary_sha256": vocabulary_sha256,
        "classnames": list(method.ctx.classnames),
        "backbone": backbone_key(backbone),
        "settings": {
            **settings,
            "noun_templates": noun_templates,
            "adjective_templates": adjective_templates,
            "percentile": c.percentile,
            "quantile_rule": c.quantile_rule,
            "ratio": c.ratio,
            "exclude_above": exclude_above,
            "max_candidates": c.max_candidates,
        },
    }

    def mine() -> NegativeLabels:
        noun_feats = encode_words(backbone, nouns, noun_templates)
        adj_feats = encode_words(backbone, adjectives, adjective_templates)
        pick = mine_negatives(
            id_features=method.id_text,
            noun_features=noun_feats,
            adjective_features=adj_feats,
            ratio=c.ratio,
            percentile=c.percentile,
            quantile_rule=c.quantile_rule,
            exclude_above=exclude_above,
        )
        labels = [nouns[i] for i in pick.nouns.tolist()] + [adjectives[i] for i in pick.adjectives.tolist()]
        feats = torch.cat([noun_feats[pick.nouns], adj_feats[pick.adjectives]])
        return NegativeLabels(labels=tuple(labels), features=feats, n_nouns=len(pick.nouns))

    return cached_negatives(
        key=key, mine=mine, cache_dir=getattr(method.ctx, "cache_dir", None), device=backbone.device
    )


@METHODS.register("neglabel")
class NegLabel(Method):
    Config = NegLabelConfig
    protocol = ZERO_SHOT
    provides = frozenset({"neg_logits"})
    paper = (
        "Jiang, Liu, Wang, Han, Ge, Han, Li, Liu. Negative Label Guided OOD Detection with Pretrained "
        "Vision-Language Models (NegLabel). ICLR 2024."
    )

    def __init__(self, *, config: NegLabelConfig, context) -> None:
        super().__init__(config=config, context=context)
        self.scale = resolve_scale(config.logit_scale, context.backbone.logit_scale)
        self.id_text = encode_words(context.backbone, context.classnames, prompts(config.prompt_set)["id"])
        self.negatives = self.mine()
        check_pin(self.negatives, expected=config.negatives_sha256, method=type(self).__name__)

    def candidate_words(self) -> tuple[Vocabulary, list[str], list[str]]:
        """The WordNet vocabulary without the excluded files, and its candidate nouns and adjectives (CSP too)."""
        c = self.config
        vocab = vocabulary(exclude=c.excluded_files)
        nouns, adjectives = candidates(
            vocab, classnames=self.ctx.classnames, drop_classnames=c.drop_id_classnames, limit=c.max_candidates
        )
        return vocab, nouns, adjectives

    def mine(self) -> NegativeLabels:
        c = self.config
        vocab, nouns, adjectives = self.candidate_words()
        p = prompts(c.prompt_set)
        return mine_pool(
            self,
            name="neglabel",
            vocabulary_sha256=vocab.sha256,
            nouns=nouns,
            adjectives=adjectives,
            noun_templates=p["noun"],
            adjective_templates=p["adjective"],
            settings={"id_templates": p["id"], "drop_id_classnames": c.drop_id_classnames},
        )

    def predict(self, batch: FeatureBatch) -> MethodOutput:
        f = l2_normalize(batch.global_)
        return MethodOutput(
            logits=self.scale * f @ self.id_text.T,
            logit_scale=self.scale,
            extra={"neg_logits": self.scale * f @ self.negatives.features.T},
        )


# ----------------------------------------------------------------------------------------------------------------
# The grouped score


def whole_number(value: float, name: str, *, score: str) -> int:
    if not math.isfinite(value) or value != int(value) or value < 1:
        raise OodbenchError(f"Score {score!r} parameter {name!r} must be a whole number >= 1, got {value}.")
    return int(value)


@functools.lru_cache(maxsize=8)
def _permutation(size: int) -> torch.Tensor:
    return group_permutation(size=size, seed=0)


VALUES = ("neg_log_ood", "probability")


def grouped_score(
    id_logits: np.ndarray,
    neg_logits: np.ndarray,
    *,
    groups: int,
    temperature: float,
    permute: bool,
    value: str = "neg_log_ood",
) -> np.ndarray:
    """NegLabel's grouped score s [N] (see negatives.grouped_id_probability), in blocks of rows, as
    `value`: "probability" is s itself; "neg_log_ood" is -log(1 - s), computed without forming 1 - s.

    Both order the images alike, so every metric agrees, but s of ID images sits within 1e-7 of 1 and
    collapses to 1.0 in float32 (the per-sample scores file), and even in float64 for confident images;
    -log(1 - s) keeps them apart."""
    m = neg_logits.shape[1]
    if groups > m:
        raise OodbenchError(
            f"The grouped score splits {m} negative labels into {groups} groups; use at most {m} groups "
            f"(e.g. neglabel:groups={min(m, 100)}) or mine more negative labels."
        )
    if value not in VALUES:
        raise OodbenchError(f"The grouped score's value is one of {list(VALUES)}, not {value!r}.")
    fn = grouped_id_probability if value == "probability" else grouped_log_ood_mass
    perm = _permutation(m - m % groups) if permute else None
    out = [
        fn(
            id_logits=torch.from_numpy(np.ascontiguousarray(id_logits[s : s + SCORE_CHUNK])),
            neg_logits=torch.from_numpy(np.ascontiguousarray(neg_logits[s : s + SCORE_CHUNK])),
            groups=groups,
            temperature=temperature,
            permutation=perm,
        ).numpy()
        for s in range(0, len(id_logits), SCORE_CHUNK)
    ]
    values = np.concatenate(out) if out else np.zeros(0)
    return values if value == "probability" else -values


@register_score(
    "neglabel",
    params={"T": 1.0, "groups": 100.0, "permute": True, "value": "neg_log_ood"},
    requires=frozenset({"neg_logits"}),
)
def neglabel_score(out: ScoreInput, *, T: float, groups: float, permute: bool, value: str) -> np.ndarray:  # noqa: N803
    """NegLabel's grouped score (mean over groups of negative labels of the softmax mass on the ID labels),
    as -log(1 - s) by default (same ranking, kept apart in float32); value=probability gives s."""
    if "neg_logits" not in out.extra:
        raise OodbenchError("The neglabel score reads extra['neg_logits'], which these outputs lack.")
    if not T > 0:
        raise OodbenchError(f"Score 'neglabel' parameter 'T' must be > 0, got {T}.")
    g = whole_number(groups, "groups", score="neglabel")
    return grouped_score(out.logits, out.extra["neg_logits"], groups=g, temperature=T, permute=permute, value=value)
