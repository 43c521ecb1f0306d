"""Tip-Adapter and Tip-Adapter-F (Zhang et al., ECCV 2022): a cache model of the few-shot features.

Keys are the few-shot images' features averaged over `views` augmented views (the reference averages
10 augmented epochs of raw features) and then L2-normalised, values their one-hot labels. For a test
feature f (normalised):
    logits = scale * f W_text^T + alpha * exp(-beta (1 - f K^T)) V
with W_text the classifier of Tip-Adapter's per-dataset templates (a 7-template ensemble on ImageNet).
alpha and beta are searched on a grid by ID accuracy. Tip-Adapter-F additionally fine-tunes the keys
(methods/tip_adapter_f.py). `logits / logit_scale` (what MCM reads) is the cosine similarity to the
class prompts plus the cache term over the logit scale. Defaults and per-dataset settings follow
Tip-Adapter's configs (docs/fidelity.md, section `tip_adapter`).

Departure, recorded: the search reads held-out pool images (up to 16 per class, disjoint from the
split), never the test set that Tip-Adapter's ImageNet script searches on, nor any OOD image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmark.suites import load_templates
from methods.base import METHODS, FeatureBatch, FitData, Method, MethodConfig, MethodOutput, l2_normalize, param
from methods.shared.training import head_output


@dataclass(frozen=True)
class TipAdapterConfig(MethodConfig):
    # Defaults: gaopengcuhk/Tip-Adapter configs/imagenet.yaml and main.py; other datasets: FAMILY_DEFAULTS.
    init_alpha: float = param(1.17, low=0.0, high=100.0)
    init_beta: float = param(1.0, low=0.0, high=100.0)
    search: bool = True  # grid search of (alpha, beta) on the validation part of the pool
    # beta in [0.1, 7) over 200 steps, alpha in [0.1, 3) over 20 steps
    search_scale_beta: float = param(7.0, low=0.0, high=100.0)
    search_scale_alpha: float = param(3.0, low=0.0, high=100.0)
    search_steps_beta: int = param(200, low=1, high=10000)
    search_steps_alpha: int = param(20, low=1, high=1000)
    views: int = param(10, low=0, high=64)  # augment_epoch: 10 augmented views per image build the cache keys
    crop_scale: tuple[float, float] = param((0.5, 1.0), low=0.01, high=1.0)  # RandomResizedCrop(scale=(0.5, 1))
    templates: str = ""  # key of benchmark/prompts/templates.json; "" = the suite's templates


# Tip-Adapter's per-dataset configs (configs/{food101,stanford_cars}.yaml; Pets repeats ImageNet's values) and
# templates (datasets/{imagenet,food101,oxford_pets,stanford_cars}.py)
FAMILY_DEFAULTS = {
    "imagenet": {"templates": "tip_adapter_imagenet"},
    "food101": {"search_scale_beta": 10.0, "search_scale_alpha": 10.0, "templates": "food101"},
    "oxford-pets": {"templates": "oxford-pets"},
    "stanford-cars": {
        "search_scale_beta": 20.0,
        "search_scale_alpha": 10.0,
        "init_alpha": 3.0,
        "templates": "stanford-cars",
    },
}


def cache_keys(train: FeatureBatch) -> torch.Tensor:
    """Per training image: the mean of its augmented views' raw features, then L2-normalised (Tip-Adapter's
    utils.py:L52-60); the normalised plain feature when no views were cached."""
    if train.views is None:
        return l2_normalize(train.global_)
    return l2_normalize(train.views.float().mean(dim=0))


@METHODS.register("tip_adapter")
class TipAdapter(Method):
    Config = TipAdapterConfig
    needs = frozenset({"views"})
    paper = (
        "Zhang, Zhang, Fang, Gao, Li, Dai, Qiao, Li. Tip-Adapter: Training-free Adaption of CLIP for "
        "Few-shot Classification. ECCV 2022."
    )
    family_defaults = FAMILY_DEFAULTS

    def __init__(self, *, config: TipAdapterConfig, context) -> None:
        super().__init__(config=config, context=context)
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None
        self.alpha, self.beta = config.init_alpha, config.init_beta
        templates = config.templates.strip()
        self.text = context.text_classifier(load_templates(templates)) if templates else context.text_features

    def cache_logits(self, feats: torch.Tensor, keys: torch.Tensor, beta: float) -> torch.Tensor:
        affinity = l2_normalize(feats) @ keys.T
        return torch.exp(-beta * (1 - affinity)) @ self.values

    def head(self, feats: torch.Tensor) -> torch.Tensor:
        scale = self.ctx.backbone.logit_scale
        clip = scale * l2_normalize(feats) @ self.text.T
        return clip + self.alpha * self.cache_logits(feats, self.keys, self.beta)

    def build_cache(self, data: FitData) -> None:
        n_classes = self.text.shape[0]
        self.keys = cache_keys(data.train)
        self.values = F.one_hot(data.labels, n_classes).float()

    @torch.no_grad()
    def search(self, data: FitData) -> None:
        """Pick (alpha, beta) by ID accuracy on the validation part of the pool (never test or OOD data)."""
        c = self.config
        if not c.search or len(data.val_labels) == 0:
            return
        feats = data.val.global_
        clip = self.ctx.backbone.logit_scale * l2_normalize(feats) @ self.text.T
        betas = [0.1 + i * (c.search_scale_beta - 0.1) / c.search_steps_beta for i in range(c.search_steps_beta)]
        alpha_list = [
            0.1 + i * (c.search_scale_alpha - 0.1) / c.search_steps_alpha for i in range(c.search_steps_alpha)
        ]
        alphas = torch.tensor(alpha_list, device=feats.device)
        best = (-1.0, self.alpha, self.beta)
        for beta in betas:  # beta outer, alpha inner, strict improvement: the first best pair is kept
            cache = self.cache_logits(feats, self.keys, beta)
            logits = clip[None] + alphas[:, None, None] * cache[None]  # [A, N, C]
            acc = (logits.argmax(-1) == data.val_labels[None]).float().mean(-1)
            i = int(acc.argmax())  # the first best alpha
            if float(acc[i]) > best[0]:
                best = (float(acc[i]), alpha_list[i], beta)
        _, self.alpha, self.beta = best

    def fit(self, data: FitData) -> None:
        self.build_cache(data)
        self.search(data)

    def predict(self, batch: FeatureBatch) -> MethodOutput:
        return head_output(self.head, batch, logit_scale=self.ctx.backbone.logit_scale)
