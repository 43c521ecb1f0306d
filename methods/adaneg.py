"""AdaNeg (Zhang et al., NeurIPS 2024): negative labels that adapt to the test stream (test-time).

Starts from 10,000 WordNet negative labels (its own mining) and keeps a small memory of test images per
label: an image confidently ID goes to its top ID class, one confidently OOD to its top negative label.
Each label's embedding becomes the mean of its text embedding and its stored images, and the score adds
the grouped NegLabel score of these adapted labels to 0.1 x that of the text labels. The memory starts
empty for every run and is written along the harness's seeded interleaved stream of all test images,
batch by batch, before each batch is scored (as the reference does). Defaults follow YBZh/OpenOOD-VLM
(docs/fidelity-negatives.md gives file and line, and how the reference's stream differs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchmark.errors import OodbenchError
from methods.base import METHODS, TEST_TIME, FeatureBatch, Method, MethodConfig, MethodOutput, l2_normalize, param
from methods.neglabel import LEXICOGRAPHER_NAMES, resolve_scale
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
    adaneg_init,
    adaneg_logits,
    adaneg_update,
    group_permutation,
    grouped_log_ood_mass,
    mine_negatives,
    prompts,
)
from methods.shared.wordnet import NEGLABEL_EXCLUDED, vocabulary

ADAPTED = "adaneg_log_ood_adapted"
VANILLA = "adaneg_log_ood_vanilla"


@dataclass(frozen=True)
class AdaNegConfig(MethodConfig):
    # Defaults: YBZh/OpenOOD-VLM scripts/ood/adaneg/imagenet.sh and openood/postprocessors/ttaprompt_postprocessor.py.
    excluded_files: tuple[str, ...] = param(tuple(sorted(NEGLABEL_EXCLUDED)), choices=LEXICOGRAPHER_NAMES)
    prompt_set: str = param("adaneg", choices=("adaneg", "neglabel"))  # methods/shared/negative_prompts.json
    percentile: float = param(0.95, low=0.0, high=1.0)  # entry int(0.95 C) of the sorted similarities
    quantile_rule: str = param("index", choices=("linear", "index"))
    count: int = param(10000, low=1, high=1_000_000)  # ood_number: negative labels kept in all
    logit_scale: float = param(100.0, low=0.0, high=1000.0)  # CLIP's 100; 0 = the backbone's own
    groups: int = param(5, low=1, high=100_000)  # group_num of the grouped scores
    memory_length: int = param(10, low=2, high=1000)  # memleng: slots per label (9 images in use)
    threshold: float = param(0.5, low=0.0, high=1.0)  # thres: centre of the confidence gap
    gap: float = param(0.5, low=0.0, high=1.0)  # images scoring above 0.75 / below 0.25 are stored
    sample_adaptive: bool = False  # samada: per-image weighted slots instead of the plain slot mean
    beta: float = param(5.0, low=0.0, high=1000.0)  # sample-adaptive sharpness (5.5 cast to int in the reference)
    max_candidates: int = param(0, low=0, high=10_000_000)  # oodbench: first N words per part of speech, 0 = all
    negatives_sha256: str = ""  # oodbench: pin the mined label list (its sha256); empty accepts any


@METHODS.register("adaneg")
class AdaNeg(Method):
    Config = AdaNegConfig
    protocol = TEST_TIME
    provides = frozenset({ADAPTED, VANILLA})
    paper = (
        "Zhang, Zhu, Wang, Zhang, Guo, Yang. AdaNeg: Adaptive Negative Proxy Guided OOD Detection with "
        "Vision-Language Models. NeurIPS 2024."
    )

    def __init__(self, *, config: AdaNegConfig, context) -> None:
        super().__init__(config=config, context=context)
        self.scale = resolve_scale(config.logit_scale, context.backbone.logit_scale)
        p = prompts(config.prompt_set)
        self.id_text = encode_words(context.backbone, context.classnames, p["id"], normalize_first=True)
        self.negatives = self.mine(p)
        check_pin(self.negatives, expected=config.negatives_sha256, method="AdaNeg")
        if config.groups > len(self.negatives):
            raise OodbenchError(
                f"AdaNeg splits its {len(self.negatives)} negative labels into groups={config.groups}; "
                f"lower groups or raise count."
            )
        m = len(self.negatives)
        self.permutation = group_permutation(size=m - m % config.groups, seed=0).to(context.device)
        text = torch.cat([self.id_text, self.negatives.features]).float()
        self.state = adaneg_init(
            text_features=text, num_classes=len(context.classnames), memory_length=config.memory_length
        )

    def mine(self, p: dict[str, list[str]]) -> NegativeLabels:
        """AdaNeg's own mining: nouns win over adjectives, ID class names removed, `count` labels split between
        the parts of speech by pool size, each scored by the sorted entry int(0.95 C); adjectives come first."""
        c, backbone = self.config, self.ctx.backbone
        vocab = vocabulary(exclude=c.excluded_files, nouns_first=True)
        nouns, adjectives = candidates(
            vocab, classnames=self.ctx.classnames, drop_classnames=True, limit=c.max_candidates
        )
        key = {
            "method": "adaneg",
            "vocabulary_sha256": vocab.sha256,
            "classnames": list(self.ctx.classnames),
            "backbone": backbone_key(backbone),
            "settings": {
                "prompts": p,
                "percentile": c.percentile,
                "quantile_rule": c.quantile_rule,
                "count": c.count,
                "max_candidates": c.max_candidates,
            },
        }

        def mine() -> NegativeLabels:
            noun_feats = encode_words(backbone, nouns, p["noun"], normalize_first=True)
            adj_feats = encode_words(backbone, adjectives, p["adjective"], normalize_first=True)
            pick = mine_negatives(
                id_features=self.id_text,
                noun_features=noun_feats,
                adjective_features=adj_feats,
                ratio=None,
                count=c.count,
                percentile=c.percentile,
                quantile_rule=c.quantile_rule,
            )
            labels = [adjectives[i] for i in pick.adjectives.tolist()] + [nouns[i] for i in pick.nouns.tolist()]
            feats = torch.cat([adj_feats[pick.adjectives], noun_feats[pick.nouns]])
            return NegativeLabels(labels=tuple(labels), features=feats, n_nouns=len(pick.nouns))

        return cached_negatives(
            key=key, mine=mine, cache_dir=getattr(self.ctx, "cache_dir", None), device=backbone.device
        )

    def predict(self, batch: FeatureBatch) -> MethodOutput:
        c, n_id = self.config, len(self.ctx.classnames)
        f = l2_normalize(batch.global_)
        # the batch is written into the memory first, then scored against it (the reference's order)
        self.state = adaneg_update(
            state=self.state,
            image_features=f,
            logit_scale=self.scale,
            threshold=c.threshold,
            gap=c.gap,
            groups=c.groups,
            permutation=self.permutation,
        )
        vanilla = self.scale * f @ self.state.text_features.T
        adapted = adaneg_logits(
            state=self.state, image_features=f, logit_scale=self.scale, sample_adaptive=c.sample_adaptive, beta=c.beta
        )

        def log_ood(x: torch.Tensor) -> torch.Tensor:
            return grouped_log_ood_mass(
                id_logits=x[:, :n_id], neg_logits=x[:, n_id:], groups=c.groups, permutation=self.permutation
            )

        return MethodOutput(
            logits=vanilla[:, :n_id],
            logit_scale=self.scale,
            extra={ADAPTED: log_ood(adapted), VANILLA: log_ood(vanilla)},
        )


@register_score(
    "adaneg", params={"lambda_vanilla": 0.1, "value": "neg_log_ood"}, requires=frozenset({ADAPTED, VANILLA})
)
def adaneg_score(out: ScoreInput, *, lambda_vanilla: float, value: str) -> np.ndarray:
    """AdaNeg's "combine" score c = s_adapted + lambda x s_vanilla (grouped NegLabel scores of the adapted and
    of the text labels), as -log(1 - c / (1 + lambda)) by default (same ranking; ID images stay apart in
    float32, where c sits within 1e-7 of 1 + lambda); value=probability gives c."""
    missing = sorted({ADAPTED, VANILLA} - set(out.extra))
    if missing:
        raise OodbenchError(f"The adaneg score reads extra arrays {missing}, which these outputs lack.")
    if not lambda_vanilla >= 0:
        raise OodbenchError(f"Score 'adaneg' parameter 'lambda_vanilla' must be >= 0, got {lambda_vanilla}.")
    adapted = np.asarray(out.extra[ADAPTED], dtype=np.float64)  # log(1 - s_adapted)
    vanilla = np.asarray(out.extra[VANILLA], dtype=np.float64)
    if value == "probability":
        return -np.expm1(adapted) - lambda_vanilla * np.expm1(vanilla)
    if value != "neg_log_ood":
        raise OodbenchError(f"Score 'adaneg' value is 'neg_log_ood' or 'probability', not {value!r}.")
    if lambda_vanilla == 0:
        return -adapted
    # 1 - c / (1 + lambda) = (exp(adapted) + lambda exp(vanilla)) / (1 + lambda)
    return np.log1p(lambda_vanilla) - np.logaddexp(adapted, np.log(lambda_vanilla) + vanilla)
