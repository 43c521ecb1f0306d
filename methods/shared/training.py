"""Shared pieces of methods that train: the training loop, augmented-view sampling, and turning a
per-feature head into a MethodOutput (global logits and, when asked, patch-token logits).

Everything random draws from the run's seeded generator (`MethodContext.generator`), so two fits
with the same seed give identical logits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from benchmark.errors import OodbenchError
from methods.base import FeatureBatch, MethodOutput


def head_output(
    head: Callable[[torch.Tensor], torch.Tensor], batch: FeatureBatch, *, logit_scale: float
) -> MethodOutput:
    """Apply a head (features [..., D] -> logits [..., C]) to the global features and, when the batch
    carries patch tokens, to every patch token: the same classifier reads both, as GL-MCM does."""
    local = None if batch.local is None else head(batch.local)
    return MethodOutput(logits=head(batch.global_), logit_scale=logit_scale, local_logits=local)


def pick_views(train: FeatureBatch, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Features of the training images `idx`, each replaced by one of its cached augmented views
    (or kept as the plain image) at random; the plain features when no views were cached."""
    plain = train.global_[idx]
    if train.views is None:
        return plain
    stacked = torch.cat([plain[None], train.views[:, idx]])  # [V + 1, B, D]
    choice = torch.randint(0, stacked.shape[0], (len(idx),), generator=generator).to(stacked.device)
    return stacked[choice, torch.arange(len(idx), device=stacked.device)]


def batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """One epoch of shuffled index batches (the last one may be smaller)."""
    perm = torch.randperm(n, generator=generator)
    return [perm[s : s + batch_size] for s in range(0, n, batch_size)]


def cosine_lr(step: int, total: int, base_lr: float, *, warmup_steps: int = 0, warmup_lr: float = 1e-5) -> float:
    """Cosine annealing to 0 over `total` steps after `warmup_steps` at a constant `warmup_lr`
    (Dassl's schedule that CoOp, CoCoOp, LoCoOp and CLIP-Adapter train with)."""
    if step < warmup_steps:
        return warmup_lr
    t = (step - warmup_steps) / max(1, total - warmup_steps)
    return 0.5 * base_lr * (1 + math.cos(math.pi * min(1.0, t)))


def make_optimizer(
    params: Iterable[torch.nn.Parameter], *, name: str, lr: float, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    params = list(params)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, eps=1e-4, weight_decay=weight_decay)
    raise OodbenchError(f"Unknown optimizer {name!r}; use 'sgd' or 'adamw'.")


def train(
    *,
    params: list[torch.nn.Parameter],
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    epochs: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    optimizer: str = "sgd",
    weight_decay: float = 0.0,
    warmup_epochs: int = 0,
) -> list[float]:
    """Minimise `loss_fn(batch indices)` over `epochs` shuffled passes with a cosine schedule.
    Returns the mean loss of each epoch."""
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise OodbenchError(
            f"Training needs epochs >= 1, batch_size >= 1 and lr > 0 "
            f"(got epochs={epochs}, batch_size={batch_size}, lr={lr}); fix the method's config."
        )
    opt = make_optimizer(params, name=optimizer, lr=lr, weight_decay=weight_decay)
    per_epoch = math.ceil(n / batch_size)
    total, warmup = epochs * per_epoch, warmup_epochs * per_epoch
    step, history = 0, []
    for _ in range(epochs):
        losses = []
        for idx in batches(n, batch_size, generator):
            for group in opt.param_groups:
                group["lr"] = cosine_lr(step, total, lr, warmup_steps=warmup)
            loss = loss_fn(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
        history.append(sum(losses) / len(losses))
        if not math.isfinite(history[-1]):
            raise OodbenchError(f"Training diverged (loss {history[-1]}); lower the method's lr.")
    return history


def epochs_for_shots(shots: int, schedule: tuple[tuple[int, int], ...]) -> int:
    """Epochs from a (max shots, epochs) schedule such as CoOp's ((1, 50), (4, 100), (16, 200))."""
    for max_shots, epochs in schedule:
        if shots <= max_shots:
            return epochs
    return schedule[-1][1]
