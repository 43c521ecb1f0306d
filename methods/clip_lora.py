"""CLIP-LoRA (Zanella, Ben Ayed, CVPR Workshops 2024; MaxZanella/CLIP-LoRA): low-rank adapters on the query,
key and value projections of every attention block of both encoders, trained with cross-entropy of
100 x cosine(image, class prompt) where the class prompts are re-encoded by the adapted text encoder every
step; everything else frozen. 500 x shots iterations of batch 32, AdamW, cosine annealing per iteration.

After fitting, the adapters are merged into the weights (an ordinary open_clip model the harness re-encodes
the test sets with) and the classifier is the adapted text encoder's embedding of the suite's first template.
What an entry ships is the adapters alone (the LoRA delta) with their spec in the file's metadata.
Defaults: the authors' run_utils.py and lora.py; docs/fidelity-tuning.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmark.errors import OodbenchError
from benchmark.tuned import TunedWeights
from methods.base import METHODS, EncoderTuner, FeatureBatch, FitData, MethodConfig, MethodOutput, l2_normalize, param
from methods.shared.augment import AUGMENTATIONS
from methods.shared.finetune import TrainConfig, clip_lora_finetune, encode_class_texts
from methods.shared.lora import (
    ENCODERS,
    PROJECTIONS,
    LoraSpec,
    apply_lora,
    load_lora_state_dict,
    lora_state_dict,
    merge_lora,
)
from methods.shared.training import head_output
from methods.shared.tuning import TRAIN_PRECISIONS, not_fitted, split_batches, templates_of


@dataclass(frozen=True)
class ClipLoraConfig(MethodConfig):
    rank: int = param(2, low=1, high=1024)
    alpha: float = param(1.0, low=1e-6, high=1e6, doc="LoRA scaling alpha (update scaled by alpha / sqrt(rank))")
    dropout: float = param(0.25, low=0.0, high=0.99)
    params: tuple[str, ...] = param(("q", "k", "v"), choices=PROJECTIONS)
    encoder: str = param("both", choices=ENCODERS)
    position: str = param("all")
    lr: float = param(2e-4, low=1e-10, high=1.0)
    iters_per_shot: int = param(500, low=1, high=100000)
    batch_size: int = param(32, low=1, high=65536)
    weight_decay: float = param(0.01, low=0.0, high=10.0)
    betas: tuple[float, float] = param((0.9, 0.999), low=0.0, high=1.0)
    min_lr: float = param(1e-6, low=0.0, high=1.0)
    logit_scale: float = param(100.0, low=1e-3, high=1e4)
    templates: str = param("", doc="template set whose first template prompts each class ('' = the suite's)")
    augmentation: str = param("clip_lora", choices=AUGMENTATIONS)
    precision: str = param("bf16", choices=TRAIN_PRECISIONS, doc="bf16 autocast on CUDA; a CPU trains in fp32")

    def spec(self) -> LoraSpec:
        return LoraSpec(
            rank=self.rank,
            alpha=self.alpha,
            dropout=self.dropout,
            params=tuple(self.params),
            encoder=self.encoder,
            position=self.position,
        )


@METHODS.register("clip_lora")
class ClipLora(EncoderTuner):
    Config = ClipLoraConfig
    family_defaults = {"imagenet": {"templates": "simple"}}  # CLIP-LoRA's ImageNet template "a photo of a {}."
    paper = "Zanella, Ben Ayed. Low-Rank Few-Shot Adaptation of Vision-Language Models. CVPR Workshops 2024."

    def __init__(self, *, config: ClipLoraConfig, context) -> None:
        super().__init__(config=config, context=context)
        config.spec().validate()
        self.model = context.backbone.model
        self.delta: dict[str, torch.Tensor] | None = None
        self.classifier: torch.Tensor | None = None

    def template(self) -> str:
        return templates_of(self, self.config.templates)[0]

    def fit(self, data: FitData) -> None:
        c = self.config
        apply_lora(self.model, spec=c.spec(), generator=self.ctx.generator)
        train = TrainConfig(
            steps=c.iters_per_shot * data.shots,
            lr=c.lr,
            optimizer="adamw",
            weight_decay=c.weight_decay,
            betas=tuple(c.betas),
            schedule="cosine",
            steps_per_tick=1,
            min_lr=c.min_lr,
            precision=c.precision,
        )
        clip_lora_finetune(
            self.model,
            split_batches(self, data, batch_size=c.batch_size, augmentation=c.augmentation),
            classnames=self.ctx.classnames,
            template=self.template(),
            tokenizer=self.ctx.backbone.tokenizer,
            logit_scale=c.logit_scale,
            config=train,
            generator=self.ctx.generator,
            device=self.ctx.device,
        )
        self._merge()

    def _merge(self) -> None:
        self.delta = lora_state_dict(self.model)
        merge_lora(self.model)
        self.model.eval().requires_grad_(False)
        self.classifier = encode_class_texts(
            self.model, self.ctx.backbone.tokenizer, self.ctx.classnames, [self.template()], device=self.ctx.device
        )

    def tuned_model(self) -> torch.nn.Module:
        if self.delta is None:
            raise not_fitted(self)
        return self.model

    def tuned_weights(self) -> TunedWeights:
        self.tuned_model()
        return TunedWeights.make(
            self.delta,
            method="clip_lora",
            kind="lora",
            base_weights_sha256=self.ctx.backbone.weights_sha256,
            extra=self.config.spec().to_metadata(),
        )

    def load_tuned_weights(self, weights: TunedWeights) -> None:
        weights.check_applies_to(method="clip_lora", base_weights_sha256=self.ctx.backbone.weights_sha256)
        spec = LoraSpec.from_metadata(weights.metadata)
        if weights.kind != "lora" or spec != self.config.spec():
            raise OodbenchError(
                f"The LoRA weights were trained with {spec}, but this run's config asks for {self.config.spec()}; "
                f"run with the entry's method_config."
            )
        apply_lora(self.model, spec=spec, generator=torch.Generator().manual_seed(0))  # A is overwritten next
        load_lora_state_dict(self.model, weights.tensors)
        self._merge()

    def predict(self, batch: FeatureBatch) -> MethodOutput:
        scale = self.config.logit_scale
        return head_output(lambda f: scale * l2_normalize(f) @ self.classifier.T, batch, logit_scale=scale)
