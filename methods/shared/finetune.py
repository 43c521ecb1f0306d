"""Training loops for methods that tune the encoders: full fine-tuning and WiSE-FT (Wortsman et al., CVPR 2022;
mlfoundations/wise-ft), LP-FT (Kumar et al., ICLR 2022; AnanyaKumar/transfer_learning), FLYP (Goyal et al.,
CVPR 2023; locuslab/FLYP) and CLIP-LoRA's loop (Zanella & Ben Ayed, CVPRW 2024; MaxZanella/CLIP-LoRA).
docs/fidelity-tuning.md traces every default to the authors' code.

Every loop takes the model, an iterable of batches (re-iterated when it runs out; each batch is the
*full* batch the recipe asks for, already augmented), a `TrainConfig`, the run's torch.Generator and the
device, and returns what it trained together with a `TrainResult` (loss per step, seconds, peak memory).

What the loops add to the authors' recipes, the same for all of them:
- bf16 autocast on CUDA (the authors train in fp32, or fp16 with a grad scaler for CLIP-LoRA); fp32 on CPU.
- A full batch is split into micro-batches of `micro_batch` images whose gradients add up to the full
  batch's: losses that are means over images are weighted by each part's share; the contrastive loss, which
  couples all images of a batch, is accumulated exactly by caching embeddings (a no-grad pass gives every
  embedding, the loss's gradient with respect to them is computed once, then each part is re-encoded with
  grad and back-propagated with its slice of that gradient).
- Out of device memory, the step is retried with half the micro-batch (and the same dropout masks), and
  later steps keep the smaller size, as feature extraction does.
"""

from __future__ import annotations

import contextlib
import math
import resource
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import OodbenchError
from benchmark.features import class_text_embeddings
from methods.shared.lora import DropoutRng, lora_parameters, lora_rng

# -- heads and classifiers ---------------------------------------------------------------------------------


class ClassificationHead(nn.Linear):
    """A linear head; with `normalize` it L2-normalises its input first (WiSE-FT's ClassificationHead)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, *, normalize: bool) -> None:
        out_features, in_features = weight.shape
        super().__init__(in_features, out_features, device=weight.device, dtype=weight.dtype)
        self.normalize = normalize
        with torch.no_grad():
            self.weight.copy_(weight)
            self.bias.copy_(torch.zeros_like(self.bias) if bias is None else bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            x = x / x.norm(dim=-1, keepdim=True)
        return super().forward(x)


def zero_shot_head(text_features: torch.Tensor, *, logit_scale: float) -> ClassificationHead:
    """WiSE-FT's zero-shot head: weights = logit_scale * the zero-shot classifier [C, D], bias 0, on
    L2-normalised image features, so its logits are exactly zero-shot CLIP's."""
    if text_features.ndim != 2:
        raise OodbenchError(f"text_features must be [classes, dim], got shape {tuple(text_features.shape)}.")
    return ClassificationHead(text_features.float() * logit_scale, normalize=True)


class ImageClassifier(nn.Module):
    """open_clip model's image encoder followed by a head (WiSE-FT's ImageClassifier). The text tower stays
    inside `clip` untouched, so the tuned model is still a whole open_clip model for re-encoding."""

    def __init__(self, clip: nn.Module, head: ClassificationHead) -> None:
        super().__init__()
        self.clip = clip
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.clip.encode_image(images))


def encode_class_texts(
    model: nn.Module, tokenizer: Callable, classnames: Sequence[str], templates: Sequence[str], *, device
) -> torch.Tensor:
    """The zero-shot classifier of a (possibly tuned) open_clip model: per class, the L2-normalised mean of
    its L2-normalised prompt embeddings [C, D] (float32), as WiSE-FT's and FLYP's get_zeroshot_classifier
    compute it: benchmark.features.class_text_embeddings, the function the frozen text-feature cache uses."""
    return class_text_embeddings(model, tokenizer, list(classnames), list(templates), device=device)


# -- configuration and result ------------------------------------------------------------------------------

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("warmup_cosine", "cosine")
TRAIN_PRECISIONS = ("bf16", "fp32")  # bf16 autocast on CUDA; a CPU trains in fp32


@dataclass(frozen=True)
class TrainConfig:
    """One optimisation run. `steps` counts optimizer steps (full batches).

    schedule "warmup_cosine": WiSE-FT's and FLYP's cosine_lr: linear warm-up over `warmup_steps` to `lr`, then
    half a cosine to 0 over the remaining steps, plus `min_lr` (FLYP adds it on top).
    schedule "cosine": torch's CosineAnnealingLR from `lr` to `min_lr`, the lr changing every `steps_per_tick`
    steps (1 = every step, as CLIP-LoRA; an epoch's steps, as LP-FT's per-epoch scheduler).
    precision "bf16" autocasts to bfloat16 on CUDA; on a CPU training is always float32."""

    steps: int
    lr: float
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.9
    schedule: str = "warmup_cosine"
    warmup_steps: int = 0
    min_lr: float = 0.0
    steps_per_tick: int = 1
    grad_clip: float | None = None
    label_smoothing: float = 0.0
    micro_batch: int | None = None
    precision: str = "bf16"

    def validate(self) -> None:
        problems = []
        if self.steps < 1:
            problems.append(f"steps={self.steps} (needs >= 1)")
        if not self.lr > 0:
            problems.append(f"lr={self.lr} (needs > 0)")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer={self.optimizer!r} (one of {OPTIMIZERS})")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule={self.schedule!r} (one of {SCHEDULES})")
        if self.precision not in TRAIN_PRECISIONS:
            problems.append(f"precision={self.precision!r} (one of {TRAIN_PRECISIONS})")
        if self.warmup_steps < 0 or self.steps_per_tick < 1:
            problems.append(f"warmup_steps={self.warmup_steps}, steps_per_tick={self.steps_per_tick}")
        if self.micro_batch is not None and self.micro_batch < 1:
            problems.append(f"micro_batch={self.micro_batch} (needs >= 1 or None)")
        if problems:
            raise OodbenchError("Bad training config: " + "; ".join(problems) + ". Fix the method's config.")


def steps_for(*, epochs: int, n_images: int, batch_size: int) -> int:
    """Optimizer steps of `epochs` passes over `n_images` in batches of `batch_size` (last one partial)."""
    if epochs < 1 or n_images < 1 or batch_size < 1:
        raise OodbenchError(f"Need epochs, images and batch size >= 1 (got {epochs}, {n_images}, {batch_size}).")
    return epochs * math.ceil(n_images / batch_size)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """The learning rate of optimizer step `step` (0-based)."""
    if cfg.schedule == "warmup_cosine":
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        done, span = step - cfg.warmup_steps, cfg.steps - cfg.warmup_steps
        return 0.5 * (1 + math.cos(math.pi * done / span)) * cfg.lr + cfg.min_lr
    ticks = math.ceil(cfg.steps / cfg.steps_per_tick)
    t = step // cfg.steps_per_tick
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * t / ticks)) / 2


@dataclass
class TrainResult:
    """What a loop reports: mean loss of each step, wall seconds, peak memory and how it was measured
    ("cuda_max_allocated": torch.cuda.max_memory_allocated over the loop; "process_maxrss": the process's
    peak resident set so far, which on a CPU includes everything loaded before the loop), and the largest
    micro-batch size in force at the end (after any halving; the largest batch when nothing was split)."""

    losses: list[float]
    seconds: float
    peak_memory_bytes: int
    memory_source: str
    steps: int
    micro_batch: int
    precision: str
    extra: dict[str, Any] = field(default_factory=dict)


# -- the shared driver -------------------------------------------------------------------------------------


def _autocast(device: torch.device, precision: str):
    if device.type == "cuda" and precision == "bf16":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _precision_label(device: torch.device, precision: str) -> str:
    return "bf16-autocast" if device.type == "cuda" and precision == "bf16" else "fp32"


def _make_optimizer(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _cycle(batches: Iterable) -> Iterator:
    """The batches again and again (each pass is a fresh iter(), so a seeded DataLoader reshuffles)."""
    while True:
        empty = True
        for b in batches:
            empty = False
            yield b
        if empty:
            raise OodbenchError(
                "The batches iterable yielded nothing on a pass; pass a re-iterable (a list or a DataLoader), "
                "not a one-shot generator that is already used up."
            )


def _peak_memory(device: torch.device) -> tuple[int, str]:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024), "process_maxrss"


def _to(batch: tuple, device: torch.device) -> tuple:
    return tuple(t.to(device, non_blocking=True) if isinstance(t, torch.Tensor) else t for t in batch)


def run_steps(
    *,
    params: list[nn.Parameter],
    step_fn: Callable[[tuple, int], float],
    batches: Iterable[tuple],
    config: TrainConfig,
    device: torch.device,
    rng: DropoutRng | None = None,
) -> TrainResult:
    """Drive `config.steps` optimizer steps. `step_fn(batch, micro_batch)` computes the full batch's loss,
    leaves the batch's gradients accumulated in `params` and returns the loss (a float). On
    torch.OutOfMemoryError the step is redone with half the micro-batch, the dropout generator rewound."""
    config.validate()
    if not params:
        raise OodbenchError("Nothing to train: no parameter requires a gradient.")
    opt = _make_optimizer(params, config)
    stream = _cycle(batches)
    limit = config.micro_batch  # lowered for good when a step runs out of memory
    largest = 0
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    losses: list[float] = []
    for step in range(config.steps):
        batch = _to(next(stream), device)
        n = len(batch[0])
        for group in opt.param_groups:
            group["lr"] = lr_at(step, config)
        size = min(limit or n, n)
        while True:
            snapshot = rng.get_state() if rng is not None else None
            opt.zero_grad(set_to_none=True)
            try:
                loss = step_fn(batch, size)
                break
            except torch.OutOfMemoryError:
                opt.zero_grad(set_to_none=True)
                if size == 1:
                    raise OodbenchError(
                        "Training runs out of device memory even one image at a time; use a device with more "
                        "memory, or a smaller backbone."
                    ) from None
                size //= 2
                limit = size
                if rng is not None:
                    rng.set_state(snapshot)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                warnings.warn(f"Out of device memory; continuing with micro-batches of {size}.", stacklevel=2)
        largest = max(largest, size)
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        opt.step()
        if not math.isfinite(loss):
            raise OodbenchError(f"Training diverged at step {step} (loss {loss}); lower the method's lr.")
        losses.append(loss)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    peak, source = _peak_memory(device)
    return TrainResult(
        losses=losses,
        seconds=seconds,
        peak_memory_bytes=peak,
        memory_source=source,
        steps=config.steps,
        micro_batch=min(limit, largest) if limit else largest,
        precision=_precision_label(device, config.precision),
    )


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(s, min(s + size, n)) for s in range(0, n, size)]


# -- (b) cross-entropy fine-tuning of image encoder + head (full FT, WiSE-FT's FT, LP-FT's FT) ---------------


def finetune_classifier(
    model: ImageClassifier,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    config: TrainConfig,
    generator: torch.Generator,
    device: torch.device,
) -> tuple[ImageClassifier, TrainResult]:
    """Cross-entropy on head(image_encoder(images)), image encoder and head trained, text tower frozen (in
    WiSE-FT's and LP-FT's code the text parameters never get a gradient either). `generator` is unused here:
    the batches carry the run's randomness; it is taken for the common signature."""
    del generator
    model.requires_grad_(False)
    model.clip.visual.requires_grad_(True)
    model.head.requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad]

    def step(batch: tuple, micro: int) -> float:
        images, labels = batch
        n, total = len(images), 0.0
        for part in _chunks(n, micro):
            with _autocast(device, config.precision):
                logits = model(images[part])
            loss = F.cross_entropy(logits.float(), labels[part], label_smoothing=config.label_smoothing)
            share = (part.stop - part.start) / n
            (loss * share).backward()
            total += float(loss.detach()) * share
        return total

    model.train()
    result = run_steps(params=params, step_fn=step, batches=batches, config=config, device=device)
    model.eval().requires_grad_(False)
    return model, result


# -- (c) LP-FT: logistic-regression probe, then fine-tuning from it ------------------------------------------


@dataclass(frozen=True)
class ProbeConfig:
    """LP-FT's probe (log_reg_sk.py): sklearn LogisticRegression warm-started along C = logspace(-7, 2, 50),
    max_iter 200, on train features standardised by one scalar mean and std; C picked by validation accuracy
    (first best)."""

    c_min_log10: float = -7.0
    c_max_log10: float = 2.0
    num_c: int = 50
    max_iter: int = 200
    default_c: float = 1.0  # used only when there is no validation data (sklearn's default C)


@dataclass(frozen=True)
class ProbeFit:
    weight: torch.Tensor  # [C, D] on raw (unnormalised) features
    bias: torch.Tensor  # [C]
    c: float
    val_acc: float | None


def fit_linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor | None,
    val_labels: torch.Tensor | None,
    *,
    num_classes: int,
    config: ProbeConfig,
    generator: torch.Generator,
) -> ProbeFit:
    """A probe on raw image features returning weights for those raw features (LP-FT's inverse of its
    feature standardisation). Classes absent from the training labels get zero rows (LP-FT's pad_head)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    x = train_features.detach().float().cpu().numpy().astype(np.float64)
    y = train_labels.detach().cpu().numpy()
    if len(np.unique(y)) < 2:
        raise OodbenchError("The linear probe needs at least two classes in the training split.")
    mean, std = float(x.mean()), float(x.std())
    if std == 0:
        raise OodbenchError("All training features are identical; the probe cannot be fitted.")
    xs = (x - mean) / std
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    has_val = val_features is not None and val_labels is not None and len(val_labels) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if has_val:
            xv = (val_features.detach().float().cpu().numpy().astype(np.float64) - mean) / std
            yv = val_labels.detach().cpu().numpy()
            clf = LogisticRegression(random_state=seed, warm_start=True, max_iter=config.max_iter)
            best = (-1.0, None, None, None)
            for c in np.logspace(config.c_min_log10, config.c_max_log10, config.num_c):
                clf.C = float(c)
                clf.fit(xs, y)
                acc = float((clf.predict(xv) == yv).mean())
                if acc > best[0]:
                    best = (acc, clf.coef_.copy(), clf.intercept_.copy(), float(c))
            val_acc, coef, intercept, c_best = best
        else:
            clf = LogisticRegression(C=config.default_c, random_state=seed, max_iter=config.max_iter).fit(xs, y)
            val_acc, coef, intercept, c_best = None, clf.coef_, clf.intercept_, config.default_c
    classes = clf.classes_.astype(int)
    if coef.shape[0] == 1:  # binary: sklearn's one row w becomes [-w/2, w/2] (same softmax)
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    coef, intercept = coef / std, intercept - coef.sum(axis=1) * (mean / std)
    weight = np.zeros((num_classes, x.shape[1]))
    bias = np.zeros(num_classes)
    weight[classes], bias[classes] = coef, intercept
    return ProbeFit(
        weight=torch.from_numpy(weight).float(), bias=torch.from_numpy(bias).float(), c=c_best, val_acc=val_acc
    )


def lp_ft(
    clip: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor | None,
    val_labels: torch.Tensor | None,
    num_classes: int,
    probe: ProbeConfig,
    config: TrainConfig,
    generator: torch.Generator,
    device: torch.device,
) -> tuple[ImageClassifier, ProbeFit, TrainResult]:
    """LP-FT: fit the probe on (cached, frozen-encoder) features, put it as the head on raw image features
    (LP-FT's ClipModel has no normalisation before its linear layer), then fine-tune encoder and head."""
    fit = fit_linear_probe(
        train_features,
        train_labels,
        val_features,
        val_labels,
        num_classes=num_classes,
        config=probe,
        generator=generator,
    )
    dtype = next(clip.visual.parameters()).dtype
    head = ClassificationHead(fit.weight.to(device, dtype), fit.bias.to(device, dtype), normalize=False)
    model, result = finetune_classifier(
        ImageClassifier(clip, head), batches, config=config, generator=generator, device=device
    )
    result.extra.update(probe_c=fit.c, probe_val_acc=fit.val_acc)
    return model, fit, result


# -- (d) FLYP: contrastive fine-tuning with class-name captions ----------------------------------------------


def clip_contrastive_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE over a batch of (image, caption) pairs, the i-th caption the positive of the
    i-th image and every other caption a negative, even one of the same class (FLYP's ClipLoss without
    ground_labels). Inputs are L2-normalised [N, D]."""
    logits = logit_scale * image @ text.T
    target = torch.arange(len(image), device=image.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def caption_batches(
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    classnames: Sequence[str],
    templates: Sequence[str],
    tokenizer: Callable,
    generator: torch.Generator,
) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """(images, labels) -> (images, caption tokens): each image's caption is one of the templates, drawn
    uniformly from `generator`, filled with its class name (FLYP's rows of (image, template(class)))."""
    if not templates:
        raise OodbenchError("FLYP needs at least one caption template.")

    class _Captioned:
        def __iter__(self):
            for images, labels in batches:
                pick = torch.randint(0, len(templates), (len(labels),), generator=generator)
                texts = [templates[int(t)].format(classnames[int(c)]) for t, c in zip(pick, labels, strict=True)]
                yield images, tokenizer(texts)

    return _Captioned()


def flyp_finetune(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    classnames: Sequence[str],
    templates: Sequence[str],
    tokenizer: Callable,
    config: TrainConfig,
    generator: torch.Generator,
    device: torch.device,
) -> tuple[nn.Module, TrainResult]:
    """FLYP: every parameter of the open_clip model (both encoders and the logit scale) trained with the CLIP
    loss between images and their class-name captions. The classifier afterwards is the tuned text encoder's
    zero-shot classifier (`encode_class_texts`)."""
    model.requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad]

    def step(batch: tuple, micro: int) -> float:
        images, tokens = batch
        n = len(images)
        scale = model.logit_scale.exp()
        if micro >= n:
            with _autocast(device, config.precision):
                img, txt = model.encode_image(images), model.encode_text(tokens)
            loss = clip_contrastive_loss(F.normalize(img.float(), dim=-1), F.normalize(txt.float(), dim=-1), scale)
            loss.backward()
            return float(loss.detach())
        parts = _chunks(n, micro)
        with torch.no_grad(), _autocast(device, config.precision):
            img = torch.cat([model.encode_image(images[p]).float() for p in parts])
            txt = torch.cat([model.encode_text(tokens[p]).float() for p in parts])
        img.requires_grad_(True)
        txt.requires_grad_(True)
        loss = clip_contrastive_loss(F.normalize(img, dim=-1), F.normalize(txt, dim=-1), scale)
        loss.backward()  # gradients for the cached embeddings, and the logit scale's in full
        for p in parts:
            with _autocast(device, config.precision):
                part_img = model.encode_image(images[p]).float()
            (part_img * img.grad[p]).sum().backward()
            with _autocast(device, config.precision):
                part_txt = model.encode_text(tokens[p]).float()
            (part_txt * txt.grad[p]).sum().backward()
        return float(loss.detach())

    captioned = caption_batches(
        batches, classnames=classnames, templates=templates, tokenizer=tokenizer, generator=generator
    )
    model.train()
    result = run_steps(params=params, step_fn=step, batches=captioned, config=config, device=device)
    model.eval().requires_grad_(False)
    return model, result


# -- CLIP-LoRA's loop: cross-entropy of cosine logits, class prompts re-encoded every step -------------------


def clip_lora_finetune(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    classnames: Sequence[str],
    template: str,
    tokenizer: Callable,
    logit_scale: float,
    config: TrainConfig,
    generator: torch.Generator,
    device: torch.device,
) -> tuple[nn.Module, TrainResult]:
    """CLIP-LoRA's training: `model` carries adapters (methods.shared.lora.apply_lora); each step encodes all
    class prompts `template.format(class)` and the images, and minimises cross-entropy of
    logit_scale * cos(image, class). Micro-batching splits the images; the class embeddings are computed once
    per step and their gradient is collected from every part, then sent through the text encoder once.
    `generator` is unused (the adapters' dropout generator was seeded by apply_lora)."""
    del generator
    params = lora_parameters(model)
    if not params:
        raise OodbenchError("The model has no LoRA adapters; call methods.shared.lora.apply_lora first.")
    tokens = tokenizer([template.format(c) for c in classnames]).to(device)
    text_tower = model.text if hasattr(model, "text") else model.transformer
    text_trainable = any(p.requires_grad for p in text_tower.parameters())
    image_trainable = any(p.requires_grad for p in model.visual.parameters())

    def step(batch: tuple, micro: int) -> float:
        images, labels = batch
        n = len(images)
        with torch.set_grad_enabled(text_trainable), _autocast(device, config.precision):
            text = model.encode_text(tokens)
        text = F.normalize(text.float(), dim=-1)
        direct = micro >= n
        text_in = text if direct or not text_trainable else text.detach().requires_grad_(True)
        total = 0.0
        for part in _chunks(n, micro):
            with torch.set_grad_enabled(image_trainable), _autocast(device, config.precision):
                img = model.encode_image(images[part])
            logits = logit_scale * F.normalize(img.float(), dim=-1) @ text_in.T
            loss = F.cross_entropy(logits, labels[part], label_smoothing=config.label_smoothing)
            share = (part.stop - part.start) / n
            (loss * share).backward()
            total += float(loss.detach()) * share
        if not direct and text_trainable:
            text.backward(text_in.grad)
        return total

    model.train()
    result = run_steps(params=params, step_fn=step, batches=batches, config=config, device=device, rng=lora_rng(model))
    model.eval()
    return model, result


# -- (e) WiSE-FT: weight-space interpolation ---------------------------------------------------------------


def wise_ft_interpolate(
    zero_shot: Mapping[str, torch.Tensor], finetuned: Mapping[str, torch.Tensor], *, alpha: float
) -> dict[str, torch.Tensor]:
    """(1 - alpha) * zero_shot + alpha * finetuned for every floating-point tensor (WiSE-FT's _merge, every
    key including the head); non-floating tensors (integer buffers) are taken from the fine-tuned side.
    alpha 0 returns the zero-shot tensors and alpha 1 the fine-tuned ones exactly; a tensor equal on both
    sides is returned as it is (the interpolation of equal values, without rounding noise)."""
    if not math.isfinite(alpha):
        raise OodbenchError(f"WiSE-FT alpha must be a finite number (got {alpha}).")
    missing, extra = sorted(set(zero_shot) - set(finetuned)), sorted(set(finetuned) - set(zero_shot))
    if missing or extra:
        raise OodbenchError(
            f"WiSE-FT needs two state dicts of the same model: {len(missing)} key(s) only in the zero-shot one "
            f"(e.g. {missing[:3]}), {len(extra)} only in the fine-tuned one (e.g. {extra[:3]})."
        )
    out: dict[str, torch.Tensor] = {}
    for key, a in zero_shot.items():
        b = finetuned[key]
        if a.shape != b.shape or a.dtype != b.dtype:
            raise OodbenchError(
                f"WiSE-FT: {key!r} is {tuple(a.shape)} {a.dtype} in the zero-shot weights but "
                f"{tuple(b.shape)} {b.dtype} in the fine-tuned ones; both must come from the same architecture."
            )
        b = b.to(a.device)
        if not a.is_floating_point() or alpha == 1.0:
            out[key] = b.detach().clone()
        elif alpha == 0.0:
            out[key] = a.detach().clone()
        elif torch.equal(a, b):
            out[key] = b.detach().clone()
        else:
            work = torch.promote_types(a.dtype, torch.float32)  # fp32 as WiSE-FT; fp16/bf16 mixed in fp32
            out[key] = ((1 - alpha) * a.detach().to(work) + alpha * b.detach().to(work)).to(a.dtype)
    return out
