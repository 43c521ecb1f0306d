"""LoCoOp (Miyai et al., NeurIPS 2023): CoOp plus entropy maximisation on OOD-like local regions.

Patch tokens whose top-K predicted classes do not contain the image's class are treated as OOD
(background, other objects); the loss pushes their class distribution towards uniform, so learned
prompts stop matching ID-irrelevant content. Trains on cached global and patch-token features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmark.errors import OodbenchError
from methods.base import METHODS, FitData, MethodConfig, l2_normalize, param
from methods.coop import CoOp


@dataclass(frozen=True)
class LoCoOpConfig(MethodConfig):
    # Defaults: LoCoOp paper Sec. 4 and its code (AtsuMiyai/LoCoOp, scripts/locoop/train.sh).
    ctx_init: str = "a photo of a"  # as our CoOp; "" = random init with n_ctx vectors (the paper's 16)
    n_ctx: int = param(16, low=1, high=64)
    lr: float = param(0.002, low=1e-8, high=10.0)  # SGD, cosine schedule, batch 32, 50 epochs
    weight_decay: float = param(5e-4, low=0.0, high=1.0)
    batch_size: int = param(32, low=1, high=65536)
    epochs: int = param(50, low=1, high=1000)
    warmup_epochs: int = param(1, low=0, high=100)
    lambda_: float = param(0.25, low=0.0, high=100.0)  # weight of the local entropy term
    # K / number of classes: the paper's K = 200 of ImageNet's 1000 classes
    top_k_ratio: float = param(0.2, low=0.0, high=1.0)


@METHODS.register("locoop")
class LoCoOp(CoOp):
    Config = LoCoOpConfig
    needs = frozenset({"local"})
    paper = "Miyai, Yu, Irie, Aizawa. LoCoOp: Few-Shot Out-of-Distribution Detection via Prompt Learning. NeurIPS 2023."

    def epochs(self, shots: int) -> int:
        return self.config.epochs

    def top_k(self, n_classes: int) -> int:
        return max(1, min(n_classes - 1, round(self.config.top_k_ratio * n_classes)))

    def fit(self, data: FitData) -> None:
        if data.train.local is None:
            raise OodbenchError(
                "LoCoOp trains on patch-token features but FitData.train.local is empty; the harness "
                "extracts them when the method declares needs={'local'}."
            )
        super().fit(data)

    def loss(self, data: FitData, idx: torch.Tensor) -> torch.Tensor:
        scale = self.ctx.backbone.logit_scale
        text = self.learner.text_features()
        labels = data.labels[idx]
        loss_id = F.cross_entropy(scale * l2_normalize(data.train.global_[idx]) @ text.T, labels)
        local_logits = scale * l2_normalize(data.train.local[idx]) @ text.T  # [B, P, C]
        topk = local_logits.topk(self.top_k(text.shape[0]), dim=-1).indices
        ood = ~(topk == labels[:, None, None]).any(dim=-1)  # [B, P]: regions whose top-K exclude the class
        if not ood.any():
            return loss_id
        p = torch.softmax(local_logits[ood], dim=-1)
        entropy = -(p * torch.log(p + 1e-8)).sum(dim=-1).mean()
        return loss_id - self.config.lambda_ * entropy
