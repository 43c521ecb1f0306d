"""LoCoOp (Miyai et al., NeurIPS 2023): CoOp plus entropy maximisation on OOD-like local regions.

Patch tokens whose top-K predicted classes do not contain the image's class are treated as OOD
(background, other objects); the loss pushes their class distribution towards uniform, so learned
prompts stop matching ID-irrelevant content. Defaults follow LoCoOp's code (AtsuMiyai/LoCoOp, config
vit_b16_ep50 and train.py; docs/fidelity.md, section `locoop`).

Departure, recorded: the image encoder is frozen, so training runs on cached features. The reference
draws a fresh random resized crop (scale (0.08, 1)) and flip at every step and reads the global
feature and the patch tokens of that crop; here each image has `views` cached augmented views, each
with its global feature and its patch tokens, and every step draws one view per image and uses both
of that view. K is a fraction of the class count (the reference's K = 200 is for ImageNet-1k's 1000).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from methods.base import METHODS, FitData, MethodConfig, l2_normalize, param
from methods.coop import CoOp
from methods.shared.training import pick_views_with_local

ENTROPY_EPS = 1e-5  # log(p + 1e-5) in entropy_select_topk (AtsuMiyai/LoCoOp trainers/locoop.py:L36)


@dataclass(frozen=True)
class LoCoOpConfig(MethodConfig):
    # Defaults: AtsuMiyai/LoCoOp train.py, configs/trainers/LoCoOp/vit_b16_ep50.yaml and Dassl's defaults.
    ctx_init: str = ""  # random N(0, 0.02) context, as LoCoOp's scripts run it
    n_ctx: int = param(16, low=1, high=64)
    lr: float = param(0.002, low=1e-8, high=10.0)  # SGD, Dassl cosine schedule, batch 32, 50 epochs
    weight_decay: float = param(5e-4, low=0.0, high=1.0)
    batch_size: int = param(32, low=1, high=65536)
    epochs: int = param(50, low=1, high=1000)
    warmup_epochs: int = param(1, low=0, high=100)
    lambda_: float = param(0.25, low=0.0, high=100.0)  # weight of the local entropy term
    # K / number of classes: the paper's K = 200 of ImageNet's 1000 classes
    top_k_ratio: float = param(0.2, low=0.0, high=1.0)
    # cached augmented views per training image (global feature and patch tokens of each)
    views: int = param(10, low=0, high=64)
    crop_scale: tuple[float, float] = param((0.08, 1.0), low=0.01, high=1.0)  # Dassl's RandomResizedCrop scale


@METHODS.register("locoop")
class LoCoOp(CoOp):
    Config = LoCoOpConfig
    needs = frozenset({"local", "views"})
    paper = "Miyai, Yu, Irie, Aizawa. LoCoOp: Few-Shot Out-of-Distribution Detection via Prompt Learning. NeurIPS 2023."
    family_defaults = {}  # LoCoOp's one config (50 epochs) serves every dataset; CoOp's ImageNet epochs do not apply

    def epochs(self, shots: int) -> int:
        return self.config.epochs

    def top_k(self, n_classes: int) -> int:
        return max(1, min(n_classes - 1, round(self.config.top_k_ratio * n_classes)))

    def loss(self, data: FitData, idx: torch.Tensor) -> torch.Tensor:
        scale = self.ctx.backbone.logit_scale
        text = self.learner.text_features()
        labels = data.labels[idx]
        glob, local = pick_views_with_local(data.train, idx, self.ctx.generator)
        loss_id = F.cross_entropy(scale * l2_normalize(glob) @ text.T, labels)
        local_logits = scale * l2_normalize(local) @ text.T  # [B, P, C]
        topk = local_logits.topk(self.top_k(text.shape[0]), dim=-1).indices
        ood = ~(topk == labels[:, None, None]).any(dim=-1)  # [B, P]: regions whose top-K exclude the class
        if not ood.any():
            return loss_id
        p = torch.softmax(local_logits[ood], dim=-1)
        entropy = -(p * torch.log(p + ENTROPY_EPS)).sum(dim=-1).mean()
        return loss_id - self.config.lambda_ * entropy
