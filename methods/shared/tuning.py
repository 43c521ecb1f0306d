"""What the encoder-tuning methods (full_ft, lp_ft, wise_ft, flyp, clip_lora) share: their training batches
from the split's images, template resolution, the fine-tuning stage full_ft and wise_ft have in common, and
how their trained tensors are shipped and loaded back.

A method of this family holds `self.model`, the trainable copy of the open_clip model the harness put in its
context, trains it in `fit`, and predicts from the features the harness re-encodes with it afterwards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch

from benchmark.errors import OodbenchError
from benchmark.suites import load_templates
from benchmark.tuned import TunedWeights
from methods.base import EncoderTuner, FitData, MethodConfig, l2_normalize, param
from methods.shared.augment import AUGMENTATIONS, augment_batch, backbone_transform
from methods.shared.finetune import (
    TRAIN_PRECISIONS,
    ClassificationHead,
    ImageClassifier,
    TrainConfig,
    finetune_classifier,
    steps_for,
    zero_shot_head,
)

WISE_FT_PAPER = (
    "Wortsman, Ilharco, Kim, Li, Kornblith, Roelofs, Gontijo-Lopes, Hajishirzi, Farhadi, Namkoong, Schmidt. "
    "Robust fine-tuning of zero-shot models. CVPR 2022."
)
HEAD = "head."  # prefix of a method's own tensors in shipped weights (the open_clip model has no `head`)


def not_fitted(method: EncoderTuner) -> OodbenchError:
    return OodbenchError(f"{type(method).__name__} has not been fitted; call fit (or load_tuned_weights) first.")


def split_batches(
    method: EncoderTuner, data: FitData, *, batch_size: int, augmentation: str
) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """The split as (images, labels) batches of `batch_size`, reshuffled every pass and augmented with the
    method's own augmentation, all drawn from the run's generator."""
    if data.images is None:
        raise OodbenchError(
            f"{type(method).__name__} trains on images, but the FitData has none; the harness provides them to "
            f'methods that declare needs={{"images"}}.'
        )
    transform = backbone_transform(augmentation, method.ctx.backbone)
    gen = method.ctx.generator
    return data.images.batches(
        batch_size=min(batch_size, len(data.images)),
        augment=lambda images: augment_batch(images, transform, generator=gen),
        generator=gen,
    )


def templates_of(method: EncoderTuner, key: str) -> list[str]:
    """A template set by key; "" is the suite's own (the prompts of `ctx.text_features`)."""
    if key:
        return load_templates(key)
    if not method.ctx.templates:
        raise OodbenchError("The method context names no suite templates; the harness sets MethodContext.templates.")
    return list(method.ctx.templates)


def classifier_of(method: EncoderTuner, key: str) -> torch.Tensor:
    """The frozen backbone's zero-shot classifier [C, D] for a template set ("" = the suite's)."""
    return method.ctx.text_features if not key else method.ctx.text_classifier(load_templates(key))


def encoder_tensors(model: torch.nn.Module, prefixes: tuple[str, ...] = ("",)) -> dict[str, torch.Tensor]:
    """The open_clip model's state-dict tensors whose names start with one of `prefixes`."""
    return {k: v for k, v in model.state_dict().items() if k.startswith(prefixes)}


def load_encoder_tensors(model: torch.nn.Module, tensors: Mapping[str, torch.Tensor], *, expected: set[str]) -> None:
    """Copy `tensors` into the model's parameters and buffers of the same names. The names must be exactly
    `expected` (what this method trains), every shape must match."""
    own = model.state_dict()
    missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or unexpected:
        raise OodbenchError(
            f"The tuned weights do not fit this method and backbone: {len(missing)} tensor(s) missing "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})."
        )
    for k, v in tensors.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise OodbenchError(
                f"Tuned weight {k!r} has shape {tuple(v.shape)}, the backbone's is {tuple(own[k].shape)}; the "
                f"weights come from another architecture."
            )
    with torch.no_grad():
        for k, v in tensors.items():
            own[k].copy_(v.to(device=own[k].device, dtype=own[k].dtype))


# ---------------------------------------------------------------- the fine-tuning stage of full_ft and wise_ft


@dataclass(frozen=True)
class FinetuneConfig(MethodConfig):
    """WiSE-FT's fine-tuning recipe (docs/fidelity-tuning.md, method `full_ft`)."""

    templates: str = param("", doc="template set of the zero-shot head ('' = the suite's)")
    lr: float = param(3e-5, low=1e-10, high=1.0)
    weight_decay: float = param(0.1, low=0.0, high=10.0)
    batch_size: int = param(512, low=1, high=65536)
    epochs: int = param(10, low=1, high=1000)
    warmup_steps: int = param(0, low=0, high=1_000_000)
    grad_clip: float | None = param(1.0, low=0.0, high=1e6)
    label_smoothing: float = param(0.0, low=0.0, high=1.0)
    augmentation: str = param("wise_ft", choices=AUGMENTATIONS)
    precision: str = param("bf16", choices=TRAIN_PRECISIONS, doc="bf16 autocast on CUDA; a CPU trains in fp32")


FINETUNE_FAMILIES = {"imagenet": {"templates": "imagenet80"}}  # WiSE-FT's 80 ImageNet templates


class HeadTuner(EncoderTuner):
    """Image encoder + linear head (full_ft, wise_ft, lp_ft). Ships `visual.*` and `head.weight/bias`."""

    name: ClassVar[str] = ""  # the registered name, written into shipped weights
    normalize_head: ClassVar[bool] = True

    def __init__(self, *, config, context) -> None:
        super().__init__(config=config, context=context)
        self.model = context.backbone.model
        self.head: ClassificationHead | None = None
        self.zero_shot: ClassificationHead | None = None  # the head zero-shot CLIP is (cosine heads only)

    # -- what the harness reads

    def trained_names(self) -> set[str]:
        return set(encoder_tensors(self.model, ("visual.",))) | {f"{HEAD}weight", f"{HEAD}bias"}

    def tuned_model(self) -> torch.nn.Module:
        if self.head is None:
            raise not_fitted(self)
        return self.model

    def tuned_weights(self) -> TunedWeights:
        self.tuned_model()
        tensors = {
            **encoder_tensors(self.model, ("visual.",)),
            **{HEAD + k: v for k, v in self.head.state_dict().items()},
        }
        return TunedWeights.make(
            tensors, method=self.name, kind="encoder", base_weights_sha256=self.ctx.backbone.weights_sha256
        )

    def load_tuned_weights(self, weights: TunedWeights) -> None:
        weights.check_applies_to(method=self.name, base_weights_sha256=self.ctx.backbone.weights_sha256)
        self.prepare_head()
        self.apply_tensors(weights.tensors)

    def prepare_head(self) -> None:
        """Set up what the head starts from (the zero-shot classifier), before fitting or loading."""

    def apply_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Load trained `visual.*` tensors into the model and `head.*` into the head."""
        tensors = dict(tensors)
        weight, bias = tensors.pop(f"{HEAD}weight", None), tensors.pop(f"{HEAD}bias", None)
        if weight is None or bias is None or weight.ndim != 2 or weight.shape[0] != len(self.ctx.classnames):
            raise OodbenchError(
                f"The tuned weights have no head of shape [{len(self.ctx.classnames)}, D] for this suite's classes."
            )
        load_encoder_tensors(self.model, tensors, expected=self.trained_names() - {f"{HEAD}weight", f"{HEAD}bias"})
        self.set_head(weight, bias)

    def set_head(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        device = self.ctx.device
        self.head = ClassificationHead(
            weight.float().to(device), bias.float().to(device), normalize=self.normalize_head
        )
        self.head.eval().requires_grad_(False)
        self.model.eval().requires_grad_(False)

    # -- predicting

    def logits(self, feats: torch.Tensor) -> torch.Tensor:
        """The head on (re-encoded) image features. A cosine head that is still exactly the zero-shot head is
        applied with zero-shot CLIP's own arithmetic, so it gives zero-shot's logits to the bit."""
        if self.zero_shot is not None and self.is_zero_shot_head():
            scale = self.ctx.backbone.logit_scale
            return scale * l2_normalize(feats) @ self.zero_shot_text.T
        return self.head(feats.float())

    def is_zero_shot_head(self) -> bool:
        return bool(torch.equal(self.head.weight, self.zero_shot.weight) and not self.head.bias.any())

    # -- the shared fine-tuning stage

    def init_zero_shot(self, key: str) -> None:
        self.zero_shot_text = classifier_of(self, key).float()
        self.zero_shot = zero_shot_head(self.zero_shot_text, logit_scale=self.ctx.backbone.logit_scale).to(
            self.ctx.device
        )

    def finetuned(self, data: FitData, cfg: FinetuneConfig) -> dict[str, torch.Tensor]:
        """The fine-tuned `visual.*` and `head.*` tensors of WiSE-FT's recipe (from the stage cache when another
        run with the same split, seed and fine-tuning settings computed them; wise_ft's alpha is not one)."""
        base = FinetuneConfig()
        settings = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(base)}
        settings["templates"] = templates_of(self, cfg.templates)
        settings["classnames"] = list(self.ctx.classnames)
        device = self.ctx.device

        def compute() -> dict[str, torch.Tensor]:
            head = zero_shot_head(self.zero_shot_text, logit_scale=self.ctx.backbone.logit_scale).to(device)
            train = TrainConfig(
                steps=steps_for(epochs=cfg.epochs, n_images=len(data.labels), batch_size=cfg.batch_size),
                lr=cfg.lr,
                optimizer="adamw",
                weight_decay=cfg.weight_decay,
                schedule="warmup_cosine",
                warmup_steps=cfg.warmup_steps,
                grad_clip=cfg.grad_clip,
                label_smoothing=cfg.label_smoothing,
                precision=cfg.precision,
            )
            batches = split_batches(self, data, batch_size=cfg.batch_size, augmentation=cfg.augmentation)
            model, _ = finetune_classifier(
                ImageClassifier(self.model, head), batches, config=train, generator=self.ctx.generator, device=device
            )
            return {
                **encoder_tensors(model.clip, ("visual.",)),
                **{HEAD + k: v for k, v in model.head.state_dict().items()},
            }

        cache = self.ctx.stage_cache
        if cache is None:
            return compute()
        return cache.get_or_compute("finetune_classifier", settings, compute, device=device)
