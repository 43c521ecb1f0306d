"""Tip-Adapter and Tip-Adapter-F (Zhang et al., ECCV 2022): a cache model of the few-shot features.

Keys are the L2-normalised few-shot features (averaged over augmented views, as the paper averages
10 augmented epochs), values their one-hot labels. For a test feature f:
    logits = scale * f W_text^T + alpha * exp(-beta (1 - f K^T)) V
alpha and beta are searched on the validation part of the pool. Tip-Adapter-F additionally
fine-tunes the keys (methods/tip_adapter_f.py). `logits / logit_scale` (what MCM reads) is the cosine
similarity to the class prompts plus the cache term over the logit scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from methods.base import METHODS, FeatureBatch, FitData, Method, MethodConfig, MethodOutput, l2_normalize, param
from methods.shared.training import head_output


@dataclass(frozen=True)
class TipAdapterConfig(MethodConfig):
    # Defaults: Tip-Adapter code's ImageNet config (gaopengcuhk/Tip-Adapter, configs/imagenet.yaml).
    init_alpha: float = param(1.17, low=0.0, high=100.0)
    init_beta: float = param(1.0, low=0.0, high=100.0)
    search: bool = True  # grid search of (alpha, beta) on the validation part of the pool
    # beta in [0.1, 7) over 200 steps, alpha in [0.1, 3) over 20 steps
    search_scale_beta: float = param(7.0, low=0.0, high=100.0)
    search_scale_alpha: float = param(3.0, low=0.0, high=100.0)
    search_steps_beta: int = param(200, low=1, high=10000)
    search_steps_alpha: int = param(20, low=1, high=1000)
    views: int = param(10, low=0, high=64)  # augment_epoch: 10 augmented views per image build the cache keys


def cache_keys(train: FeatureBatch) -> torch.Tensor:
    """Per training image: the normalised mean of its normalised augmented views (or its plain feature)."""
    if train.views is None:
        return l2_normalize(train.global_)
    return l2_normalize(l2_normalize(train.views).mean(dim=0))


@METHODS.register("tip_adapter")
class TipAdapter(Method):
    Config = TipAdapterConfig
    needs = frozenset({"views"})
    paper = (
        "Zhang, Zhang, Fang, Gao, Li, Dai, Qiao, Li. Tip-Adapter: Training-free Adaption of CLIP for "
        "Few-shot Classification. ECCV 2022."
    )

    def __init__(self, *, config: TipAdapterConfig, context) -> None:
        super().__init__(config=config, context=context)
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None
        self.alpha, self.beta = config.init_alpha, config.init_beta

    def cache_logits(self, feats: torch.Tensor, keys: torch.Tensor, beta: float) -> torch.Tensor:
        affinity = l2_normalize(feats) @ keys.T
        return torch.exp(-beta * (1 - affinity)) @ self.values

    def head(self, feats: torch.Tensor) -> torch.Tensor:
        scale = self.ctx.backbone.logit_scale
        clip = scale * l2_normalize(feats) @ self.ctx.text_features.T
        return clip + self.alpha * self.cache_logits(feats, self.keys, self.beta)

    def build_cache(self, data: FitData) -> None:
        n_classes = self.ctx.text_features.shape[0]
        self.keys = cache_keys(data.train)
        self.values = F.one_hot(data.labels, n_classes).float()

    @torch.no_grad()
    def search(self, data: FitData) -> None:
        """Pick (alpha, beta) by ID accuracy on the validation part of the pool (never test or OOD data)."""
        c = self.config
        if not c.search or len(data.val_labels) == 0:
            return
        feats = data.val.global_
        clip = self.ctx.backbone.logit_scale * l2_normalize(feats) @ self.ctx.text_features.T
        betas = [0.1 + i * (c.search_scale_beta - 0.1) / c.search_steps_beta for i in range(c.search_steps_beta)]
        alphas = torch.tensor(
            [0.1 + i * (c.search_scale_alpha - 0.1) / c.search_steps_alpha for i in range(c.search_steps_alpha)],
            device=feats.device,
        )
        best = (-1.0, self.alpha, self.beta)
        for beta in betas:
            cache = self.cache_logits(feats, self.keys, beta)
            logits = clip[None] + alphas[:, None, None] * cache[None]  # [A, N, C]
            acc = (logits.argmax(-1) == data.val_labels[None]).float().mean(-1)
            i = int(acc.argmax())  # first best alpha; betas ascend, ties keep the smaller beta
            if float(acc[i]) > best[0]:
                best = (float(acc[i]), float(alphas[i]), beta)
        _, self.alpha, self.beta = best

    def fit(self, data: FitData) -> None:
        self.build_cache(data)
        self.search(data)

    def predict(self, batch: FeatureBatch) -> MethodOutput:
        return head_output(self.head, batch, logit_scale=self.ctx.backbone.logit_scale)
