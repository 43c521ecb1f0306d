"""CLIP-Adapter (Gao et al., IJCV 2023): a bottleneck MLP on the image feature, blended residually.

f' = ratio * A(f) + (1 - ratio) * f with A = Linear(D, D/4) ReLU Linear(D/4, D) ReLU, classified
against the frozen zero-shot text classifier of CLIP-Adapter's per-dataset template. The released code
is a trainer for CoOp's codebase, so it trains with CoOp's Dassl recipe (docs/fidelity.md, section
`clip_adapter`).

Departure, recorded: trains on cached features, the reference's per-step random resized crops (scale
(0.08, 1)) and flips replaced by `views` cached augmented views per training image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.suites import load_templates
from methods.base import METHODS, FeatureBatch, FitData, Method, MethodConfig, MethodOutput, l2_normalize, param
from methods.shared.training import head_output, pick_views, train


@dataclass(frozen=True)
class ClipAdapterConfig(MethodConfig):
    # Defaults: gaopengcuhk/CLIP-Adapter clip_adapter.py (reduction 4, ratio 0.2) trained with CoOp's config
    # vit_b16_ep50 (SGD, lr 2e-3, batch 32, Dassl cosine schedule); 50 epochs on ImageNet, 200 elsewhere.
    reduction: int = param(4, low=1, high=1024)
    ratio: float = param(0.2, low=0.0, high=1.0)
    lr: float = param(0.002, low=1e-8, high=10.0)
    weight_decay: float = param(5e-4, low=0.0, high=1.0)
    batch_size: int = param(32, low=1, high=65536)
    epochs: int = param(200, low=1, high=1000)
    warmup_epochs: int = param(1, low=0, high=100)
    views: int = param(10, low=0, high=64)  # cached augmented views per training image (the paper's crops and flips)
    crop_scale: tuple[float, float] = param((0.08, 1.0), low=0.01, high=1.0)  # Dassl's RandomResizedCrop scale
    templates: str = ""  # key of benchmark/prompts/templates.json; "" = the suite's templates


# CLIP-Adapter's CUSTOM_TEMPLATES (gaopengcuhk/CLIP-Adapter clip_adapter.py:L18-34), per suite family
FAMILY_DEFAULTS = {
    "imagenet": {"epochs": 50, "templates": "simple"},
    "food101": {"templates": "food101"},
    "oxford-pets": {"templates": "oxford-pets"},
    "stanford-cars": {"templates": "stanford-cars"},
}


class Adapter(nn.Module):
    def __init__(self, dim: int, reduction: int, generator: torch.Generator) -> None:
        super().__init__()
        hidden = max(1, dim // reduction)
        self.down = nn.Linear(dim, hidden, bias=False)
        self.up = nn.Linear(hidden, dim, bias=False)
        with torch.no_grad():  # PyTorch's default init, drawn from the run's generator
            for layer in (self.down, self.up):
                bound = layer.in_features**-0.5
                layer.weight.copy_(torch.empty(layer.weight.shape).uniform_(-bound, bound, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.up(F.relu(self.down(x))))


@METHODS.register("clip_adapter")
class ClipAdapter(Method):
    Config = ClipAdapterConfig
    needs = frozenset({"views"})
    paper = (
        "Gao, Geng, Zhang, Ma, Fang, Zhang, Li, Qiao. CLIP-Adapter: Better Vision-Language Models with "
        "Feature Adapters. IJCV 2023."
    )
    family_defaults = FAMILY_DEFAULTS

    def __init__(self, *, config: ClipAdapterConfig, context) -> None:
        super().__init__(config=config, context=context)
        dim = context.text_features.shape[1]
        self.adapter = Adapter(dim, config.reduction, context.generator).to(context.device)
        templates = config.templates.strip()
        self.text = context.text_classifier(load_templates(templates)) if templates else context.text_features

    def head(self, feats: torch.Tensor) -> torch.Tensor:
        r = self.config.ratio
        adapted = r * self.adapter(feats.float()) + (1 - r) * feats.float()
        return self.ctx.backbone.logit_scale * l2_normalize(adapted) @ self.text.T

    def fit(self, data: FitData) -> None:
        c = self.config

        def loss(idx: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(self.head(pick_views(data.train, idx, self.ctx.generator)), data.labels[idx])

        train(
            params=list(self.adapter.parameters()),
            loss_fn=loss,
            n=len(data.labels),
            epochs=c.epochs,
            batch_size=c.batch_size,
            lr=c.lr,
            generator=self.ctx.generator,
            weight_decay=c.weight_decay,
            warmup_epochs=c.warmup_epochs,
            schedule="dassl",
        )

    def predict(self, batch: FeatureBatch) -> MethodOutput:
        return head_output(self.head, batch, logit_scale=self.ctx.backbone.logit_scale)
