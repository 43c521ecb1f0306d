"""FLYP, "finetune like you pretrain" (Goyal, Kumar, Garg, Kolter, Raghunathan, CVPR 2023; locuslab/FLYP):
every image of a batch is paired with a caption made from its class name and a template drawn at random, and
the whole CLIP model (both encoders and the logit scale) is trained with CLIP's own contrastive loss. The
classifier is then the tuned text encoder's zero-shot classifier (templates averaged) at the tuned logit
scale. Defaults: FLYP's ImageNet command with warm-up 0 as in its few-shot commands; docs/fidelity-tuning.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmark.tuned import TunedWeights
from methods.base import METHODS, EncoderTuner, FeatureBatch, FitData, MethodConfig, MethodOutput, l2_normalize, param
from methods.shared.augment import AUGMENTATIONS
from methods.shared.finetune import TrainConfig, encode_class_texts, flyp_finetune, steps_for
from methods.shared.training import head_output
from methods.shared.tuning import (
    TRAIN_PRECISIONS,
    encoder_tensors,
    load_encoder_tensors,
    not_fitted,
    split_batches,
    templates_of,
)


@dataclass(frozen=True)
class FlypConfig(MethodConfig):
    templates: str = param("", doc="caption and classifier templates ('' = the suite's)")
    lr: float = param(1e-5, low=1e-10, high=1.0)
    weight_decay: float = param(0.1, low=0.0, high=10.0)
    batch_size: int = param(512, low=1, high=65536)
    epochs: int = param(10, low=1, high=1000)
    warmup_steps: int = param(0, low=0, high=1_000_000)
    min_lr: float = param(0.0, low=0.0, high=1.0)
    grad_clip: float | None = param(None, low=0.0, high=1e6)
    augmentation: str = param("wise_ft", choices=AUGMENTATIONS)
    precision: str = param("bf16", choices=TRAIN_PRECISIONS, doc="bf16 autocast on CUDA; a CPU trains in fp32")


@METHODS.register("flyp")
class Flyp(EncoderTuner):
    Config = FlypConfig
    family_defaults = {"imagenet": {"templates": "imagenet80"}}
    paper = (
        "Goyal, Kumar, Garg, Kolter, Raghunathan. Finetune like you pretrain: Improved finetuning of zero-shot "
        "vision models. CVPR 2023."
    )

    def __init__(self, *, config: FlypConfig, context) -> None:
        super().__init__(config=config, context=context)
        self.model = context.backbone.model
        self.classifier: torch.Tensor | None = None
        self.scale = 0.0

    def fit(self, data: FitData) -> None:
        c = self.config
        train = TrainConfig(
            steps=steps_for(epochs=c.epochs, n_images=len(data.labels), batch_size=c.batch_size),
            lr=c.lr,
            optimizer="adamw",
            weight_decay=c.weight_decay,
            schedule="warmup_cosine",
            warmup_steps=c.warmup_steps,
            min_lr=c.min_lr,
            grad_clip=c.grad_clip,
            precision=c.precision,
        )
        flyp_finetune(
            self.model,
            split_batches(self, data, batch_size=c.batch_size, augmentation=c.augmentation),
            classnames=self.ctx.classnames,
            templates=templates_of(self, c.templates),
            tokenizer=self.ctx.backbone.tokenizer,
            config=train,
            generator=self.ctx.generator,
            device=self.ctx.device,
        )
        self._classify()

    def _classify(self) -> None:
        self.model.eval().requires_grad_(False)
        templates = templates_of(self, self.config.templates)
        self.classifier = encode_class_texts(
            self.model, self.ctx.backbone.tokenizer, self.ctx.classnames, templates, device=self.ctx.device
        )
        self.scale = float(self.model.logit_scale.exp().item())

    def tuned_model(self) -> torch.nn.Module:
        if self.classifier is None:
            raise not_fitted(self)
        return self.model

    def tuned_weights(self) -> TunedWeights:
        self.tuned_model()
        return TunedWeights.make(
            encoder_tensors(self.model),
            method="flyp",
            kind="encoder",
            base_weights_sha256=self.ctx.backbone.weights_sha256,
        )

    def load_tuned_weights(self, weights: TunedWeights) -> None:
        weights.check_applies_to(method="flyp", base_weights_sha256=self.ctx.backbone.weights_sha256)
        load_encoder_tensors(self.model, weights.tensors, expected=set(encoder_tensors(self.model)))
        self._classify()

    def predict(self, batch: FeatureBatch) -> MethodOutput:
        return head_output(lambda f: self.scale * l2_normalize(f) @ self.classifier.T, batch, logit_scale=self.scale)
