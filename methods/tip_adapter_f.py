"""Tip-Adapter-F (Zhang et al., ECCV 2022): Tip-Adapter with its cache keys fine-tuned.

The keys start as Tip-Adapter's cache and are trained as its code does (AdamW, lr 1e-3, eps 1e-4,
cosine over every step, batch 256 with the last partial batch kept, 20 epochs, alpha and beta at their
initial values); then alpha and beta are searched as for Tip-Adapter (docs/fidelity.md, section
`tip_adapter_f`).

Departures, recorded: each step reads one of `views` cached augmented views per image (scale (0.5, 1))
instead of a fresh crop; the last epoch is kept (the reference keeps the epoch with the best test
accuracy) and the search reads held-out pool images, since no test data may reach `fit`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from methods.base import METHODS, FitData, l2_normalize, param
from methods.shared.training import pick_views, train
from methods.tip_adapter import TipAdapter, TipAdapterConfig


@dataclass(frozen=True)
class TipAdapterFConfig(TipAdapterConfig):
    # Training: Tip-Adapter code's ImageNet config: AdamW lr 1e-3 (eps 1e-4), 20 epochs, batch 256, cosine.
    lr: float = param(0.001, low=1e-8, high=10.0)
    epochs: int = param(20, low=1, high=1000)
    batch_size: int = param(256, low=1, high=65536)


@METHODS.register("tip_adapter_f")
class TipAdapterF(TipAdapter):
    Config = TipAdapterFConfig

    def fit(self, data: FitData) -> None:
        self.build_cache(data)
        c = self.config
        keys = torch.nn.Parameter(self.keys.clone())
        scale = self.ctx.backbone.logit_scale

        def loss(idx: torch.Tensor) -> torch.Tensor:
            feats = l2_normalize(pick_views(data.train, idx, self.ctx.generator))
            logits = scale * feats @ self.text.T + self.alpha * self.cache_logits(feats, keys, self.beta)
            return F.cross_entropy(logits, data.labels[idx])

        train(
            params=[keys],
            loss_fn=loss,
            n=len(data.labels),
            epochs=c.epochs,
            batch_size=c.batch_size,
            lr=c.lr,
            generator=self.ctx.generator,
            optimizer="adamw",
            weight_decay=0.01,  # PyTorch's AdamW default; the reference passes none
            schedule="step_cosine",
        )
        self.keys = keys.detach()  # the paper's adapter is a Linear layer initialised with the keys, not re-normalised
        self.search(data)
