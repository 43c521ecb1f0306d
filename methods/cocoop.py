"""CoCoOp (Zhou et al., CVPR 2022): CoOp's context shifted per image by a small meta-network.

The meta-net (Linear D->D/16, ReLU, Linear D/16->W) maps an image feature to a shift added to
every context vector, so each image gets its own class prompts. Defaults: the config CoCoOp's scripts
use for every dataset, vit_b16_c4_ep10_batch1_ctxv1 (docs/fidelity.md, section `cocoop`).

Departure, recorded: trains on cached features, the reference's per-step random resized crops (scale
(0.08, 1)) and flips replaced by `views` cached augmented views per training image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from methods.base import METHODS, FeatureBatch, FitData, Method, MethodConfig, MethodOutput, l2_normalize, param
from methods.shared.prompts import PromptLearner
from methods.shared.training import pick_views, train

PREDICT_CHUNK = 128  # images per text-encoder pass at prediction (C prompts each)


@dataclass(frozen=True)
class CoCoOpConfig(MethodConfig):
    # Defaults: CoCoOp paper Sec. 4 and its code's config vit_b16_c4_ep10_batch1_ctxv1.
    ctx_init: str = "a photo of a"  # n_ctx = 4 tokens of the init; "" = random init with n_ctx vectors
    n_ctx: int = param(4, low=1, high=64)
    lr: float = param(0.002, low=1e-8, high=10.0)  # SGD, momentum 0.9, weight decay 5e-4, cosine schedule
    weight_decay: float = param(5e-4, low=0.0, high=1.0)
    batch_size: int = param(1, low=1, high=65536)
    epochs: int = param(10, low=1, high=1000)
    warmup_epochs: int = param(1, low=0, high=100)
    meta_reduction: int = param(16, low=1, high=1024)  # meta-net hidden width = D / 16
    views: int = param(10, low=0, high=64)  # cached augmented views per training image (the paper's crops and flips)
    crop_scale: tuple[float, float] = param((0.08, 1.0), low=0.01, high=1.0)  # Dassl's RandomResizedCrop scale


class MetaNet(nn.Module):
    def __init__(self, dim: int, width: int, reduction: int, generator: torch.Generator) -> None:
        super().__init__()
        hidden = max(1, dim // reduction)
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, width))
        with torch.no_grad():  # PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn from the run's generator
            for layer in (self.net[0], self.net[2]):
                bound = layer.in_features**-0.5
                for p in (layer.weight, layer.bias):
                    p.copy_(torch.empty(p.shape).uniform_(-bound, bound, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@METHODS.register("cocoop")
class CoCoOp(Method):
    Config = CoCoOpConfig
    needs = frozenset({"views"})
    paper = "Zhou, Yang, Loy, Liu. Conditional Prompt Learning for Vision-Language Models (CoCoOp). CVPR 2022."

    def __init__(self, *, config: CoCoOpConfig, context) -> None:
        super().__init__(config=config, context=context)
        self.learner = PromptLearner(
            backbone=context.backbone,
            classnames=context.classnames,
            n_ctx=config.n_ctx,
            ctx_init=config.ctx_init,
            generator=context.generator,
        )
        dim = context.text_features.shape[1]
        self.meta = MetaNet(dim, self.learner.encoder.width, config.meta_reduction, context.generator).to(
            context.device
        )

    def loss(self, data: FitData, idx: torch.Tensor) -> torch.Tensor:
        feats = l2_normalize(pick_views(data.train, idx, self.ctx.generator))
        text = self.learner.text_features(self.meta(feats))  # [B, C, D]
        logits = self.ctx.backbone.logit_scale * torch.einsum("bd,bcd->bc", feats, text)
        return F.cross_entropy(logits, data.labels[idx])

    def fit(self, data: FitData) -> None:
        c = self.config
        params = [self.learner.ctx, *self.meta.parameters()]
        train(
            params=params,
            loss_fn=lambda idx: self.loss(data, idx),
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
        scale = self.ctx.backbone.logit_scale
        logits, local = [], []
        for s in range(0, len(batch.global_), PREDICT_CHUNK):
            g = batch.global_[s : s + PREDICT_CHUNK]
            text = self.learner.text_features(self.meta(l2_normalize(g)))  # [B, C, D]: conditioned on the image
            logits.append(scale * torch.einsum("bd,bcd->bc", l2_normalize(g), text))
            if batch.local is not None:
                loc = l2_normalize(batch.local[s : s + PREDICT_CHUNK])
                local.append(scale * torch.einsum("bpd,bcd->bpc", loc, text))
        return MethodOutput(
            logits=torch.cat(logits),
            logit_scale=scale,
            local_logits=torch.cat(local) if batch.local is not None else None,
        )
