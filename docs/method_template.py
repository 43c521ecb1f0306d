"""Template for a new oodbench method: copy this file, rename the method, replace the head.

Run it without touching oodbench:

    oodbench run --suite fmnist-ood --backbone oodbench-tiny-fmnist:demo \\
        --method-file my_method.py --method my_prompt_bias --shots 16

What this example does (replace it with your method): zero-shot CLIP plus a learned per-class bias
on the logits, trained with cross-entropy on the few-shot split's cached features and augmented
views, with the weight decay chosen on the validation part of the pool. See
docs/adding-a-method.md for the protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from methods.base import (
    FEW_SHOT,
    METHODS,
    FeatureBatch,
    FitData,
    Method,
    MethodConfig,
    MethodOutput,
    l2_normalize,
    param,
)
from methods.shared.training import head_output, pick_views, train


@dataclass(frozen=True)
class PromptBiasConfig(MethodConfig):
    """Hyperparameters with defaults; cite where each default comes from (paper section or code). `param`
    adds the bounds a --config value is checked against before any work."""

    lr: float = param(0.01, low=1e-8, high=10.0)
    epochs: int = param(20, low=1, high=1000)
    batch_size: int = param(32, low=1, high=65536)
    weight_decays: tuple[float, ...] = param((0.0, 1e-3, 1e-1), low=0.0, high=1.0)  # candidates, chosen on val
    views: int = param(4, low=0, high=64)  # cached augmented views per pool image (needs "views"); in every row


@METHODS.register("my_prompt_bias")
class PromptBias(Method):
    Config = PromptBiasConfig
    protocol = FEW_SHOT  # ZERO_SHOT: never fitted, run with shots 0; TEST_TIME: adapts over the test stream
    needs = frozenset({"views"})  # extra cached features fit/predict read: "views", "local" (patch tokens)
    paper = "Your Name. Your Paper Title. Venue Year."

    def __init__(self, *, config: PromptBiasConfig, context) -> None:
        super().__init__(config=config, context=context)
        n_classes = context.text_features.shape[0]
        self.bias = torch.zeros(n_classes, device=context.device)

    def head(self, feats: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """Image features [..., D] -> class logits [..., C], already multiplied by the logit scale."""
        scale = self.ctx.backbone.logit_scale
        return scale * l2_normalize(feats) @ self.ctx.text_features.T + (self.bias if bias is None else bias)

    def _train(self, data: FitData, weight_decay: float) -> torch.Tensor:
        bias = torch.nn.Parameter(torch.zeros_like(self.bias))

        def loss(idx: torch.Tensor) -> torch.Tensor:
            feats = pick_views(data.train, idx, self.ctx.generator)  # a random cached view per image
            return F.cross_entropy(self.head(feats, bias), data.labels[idx])

        c = self.config
        train(
            params=[bias],
            loss_fn=loss,
            n=len(data.labels),
            epochs=c.epochs,
            batch_size=c.batch_size,
            lr=c.lr,
            generator=self.ctx.generator,
            weight_decay=weight_decay,
        )
        return bias.detach()

    def fit(self, data: FitData) -> None:
        """Only the few-shot split (data.train/labels) and the validation part (data.val/val_labels) exist here."""
        best = None
        for wd in self.config.weight_decays:
            bias = self._train(data, wd)
            with torch.no_grad():
                acc = (self.head(data.val.global_, bias).argmax(-1) == data.val_labels).float().mean().item()
            if best is None or acc > best[0]:
                best = (acc, bias)
        self.bias = best[1]

    def predict(self, batch: FeatureBatch) -> MethodOutput:
        # head_output applies the head to the global features and, when a score asks for them
        # (gl_mcm), to every patch token, filling MethodOutput.local_logits.
        return head_output(self.head, batch, logit_scale=self.ctx.backbone.logit_scale)
