"""CoOp (Zhou et al., IJCV 2022): learned context vectors in front of the class name, frozen CLIP.

Defaults are CoOp's main setting as its code runs it (docs/fidelity.md, section `coop`): 16 context
vectors drawn from N(0, 0.02^2) shared by all classes, class token at the end, SGD with Dassl's
per-epoch cosine schedule after one warm-up epoch, batch 32, the epochs of the shot count (50 on
ImageNet for every shot count).

Departure, recorded: the image encoder is frozen, so training runs on cached features; the random
resized crops (scale (0.08, 1)) and flips that the reference draws afresh at every step come from
`views` cached augmented views per training image, one drawn per image and step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from methods.base import METHODS, FeatureBatch, FitData, Method, MethodConfig, MethodOutput, l2_normalize, param
from methods.shared.prompts import PromptLearner, coop_schedule_epochs
from methods.shared.training import head_output, pick_views, train


@dataclass(frozen=True)
class CoOpConfig(MethodConfig):
    # Defaults: KaiyangZhou/CoOp (train.py, configs/trainers/CoOp/vit_b16_ep50.yaml) and Dassl's defaults.
    ctx_init: str = ""  # "" = random N(0, 0.02) context (CoOp's main runs); words such as "a photo of a" init it
    n_ctx: int = param(16, low=1, high=64)  # context length for random init
    lr: float = param(0.002, low=1e-8, high=10.0)  # SGD, momentum 0.9, Dassl cosine schedule
    weight_decay: float = param(5e-4, low=0.0, high=1.0)
    batch_size: int = param(32, low=1, high=65536)
    # 0: the schedule by shots, 50 epochs at 1 shot, 100 at 2-4 shots, 200 at 8-16 shots (50 on ImageNet)
    epochs: int = param(0, low=0, high=1000)
    warmup_epochs: int = param(1, low=0, high=100)  # constant lr 1e-5 for the first epoch
    # cached augmented views per training image standing in for per-step random crops and flips
    views: int = param(10, low=0, high=64)
    crop_scale: tuple[float, float] = param((0.08, 1.0), low=0.01, high=1.0)  # Dassl's RandomResizedCrop scale


@METHODS.register("coop")
class CoOp(Method):
    Config = CoOpConfig
    needs = frozenset({"views"})
    paper = "Zhou, Yang, Loy, Liu. Learning to Prompt for Vision-Language Models (CoOp). IJCV 2022."
    family_defaults = {"imagenet": {"epochs": 50}}  # CoOp's ImageNet runs use vit_b16_ep50 at every shot count

    def __init__(self, *, config: CoOpConfig, context) -> None:
        super().__init__(config=config, context=context)
        self.learner = PromptLearner(
            backbone=context.backbone,
            classnames=context.classnames,
            n_ctx=config.n_ctx,
            ctx_init=config.ctx_init,
            generator=context.generator,
        )
        self.text: torch.Tensor | None = None

    def epochs(self, shots: int) -> int:
        return self.config.epochs or coop_schedule_epochs(shots)

    def loss(self, data: FitData, idx: torch.Tensor) -> torch.Tensor:
        feats = l2_normalize(pick_views(data.train, idx, self.ctx.generator))
        logits = self.ctx.backbone.logit_scale * feats @ self.learner.text_features().T
        return F.cross_entropy(logits, data.labels[idx])

    def fit(self, data: FitData) -> None:
        c = self.config
        train(
            params=[self.learner.ctx],
            loss_fn=lambda idx: self.loss(data, idx),
            n=len(data.labels),
            epochs=self.epochs(data.shots),
            batch_size=c.batch_size,
            lr=c.lr,
            generator=self.ctx.generator,
            weight_decay=c.weight_decay,
            warmup_epochs=c.warmup_epochs,
            schedule="dassl",
        )
        with torch.no_grad():
            self.text = self.learner.text_features().detach()

    def predict(self, batch: FeatureBatch) -> MethodOutput:
        text = self.text if self.text is not None else self.learner.text_features()
        scale = self.ctx.backbone.logit_scale
        return head_output(lambda f: scale * l2_normalize(f) @ text.T, batch, logit_scale=scale)
