"""Shared pieces of methods that train: the training loop with the reference schedules, augmented-view
sampling, and turning a per-feature head into a MethodOutput (global logits and, when asked, patch-token
logits).

Two schedules, each as its authors' code runs it (docs/fidelity.md):
- "dassl" (CoOp, CoCoOp, LoCoOp, CLIP-Adapter: Dassl's trainer): SGD; the learning rate is set once per
  epoch: `warmup_epochs` epochs at the constant `warmup_lr`, then epoch e at lr/2 (1 + cos(pi (e - W) / E))
  (E = epochs, W = warmup epochs), so it never reaches 0; an epoch drops its last partial batch when the
  split has at least `batch_size` images (Dassl's training loader).
- "step_cosine" (Tip-Adapter-F): cosine from lr to 0 over every step of training, no warm-up, the last
  partial batch kept.

Everything random draws from the run's seeded generator (`MethodContext.generator`), so two fits with the
same seed give identical logits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from benchmark.errors import OodbenchError
from methods.base import FeatureBatch, MethodOutput

SCHEDULES = ("dassl", "step_cosine")
WARMUP_LR = 1e-5  # Dassl's WARMUP_CONS_LR in CoOp's, CoCoOp's and LoCoOp's configs


def head_output(
    head: Callable[[torch.Tensor], torch.Tensor], batch: FeatureBatch, *, logit_scale: float
) -> MethodOutput:
    """Apply a head (features [..., D] -> logits [..., C]) to the global features and, when the batch
    carries patch tokens, to every patch token: the same classifier reads both, as GL-MCM does."""
    local = None if batch.local is None else head(batch.local)
    return MethodOutput(logits=head(batch.global_), logit_scale=logit_scale, local_logits=local)


def view_choice(train: FeatureBatch, n: int, generator: torch.Generator) -> torch.Tensor | None:
    """For each of `n` training images, which of its cached augmented views a step uses (uniform, never the
    un-augmented image: the reference code augments every training image at every step); None without views."""
    if train.views is None:
        return None
    return torch.randint(0, train.views.shape[0], (n,), generator=generator)


def pick_views(train: FeatureBatch, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Global features of the training images `idx`, each one of its cached augmented views drawn at random;
    the plain features when no views were cached."""
    choice = view_choice(train, len(idx), generator)
    if choice is None:
        return train.global_[idx]
    dev = train.views.device
    return train.views[choice.to(dev), idx.to(dev)]


def pick_views_with_local(
    train: FeatureBatch, idx: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Global features [B, D] and patch tokens [B, P, D] of the training images `idx`, both of the same randomly
    drawn augmented view of each image (LoCoOp's global and local features come from one augmented image); the
    plain features and patch tokens when no views were cached. Patch tokens are returned in float32 on the
    device of the global features."""
    choice = view_choice(train, len(idx), generator)
    if choice is None:
        if train.local is None:
            raise OodbenchError(
                "Training on patch tokens needs FitData.train.local; the harness gives it to methods "
                "that declare needs={'local'}."
            )
        return train.global_[idx], train.local[idx]
    if train.local_views is None:
        raise OodbenchError(
            "Training on augmented views of patch tokens needs FitData.train.local_views; the harness gives it "
            "to methods that declare needs={'local', 'views'} with views >= 1."
        )
    dev = train.views.device
    glob = train.views[choice.to(dev), idx.to(dev)]
    lv = train.local_views
    local = lv[choice.to(lv.device), idx.to(lv.device)]
    return glob, local.to(device=glob.device, dtype=torch.float32)


def batches(n: int, batch_size: int, generator: torch.Generator, *, drop_last: bool = False) -> list[torch.Tensor]:
    """One epoch of shuffled index batches; with `drop_last` the last batch is dropped when it is partial."""
    perm = torch.randperm(n, generator=generator)
    out = [perm[s : s + batch_size] for s in range(0, n, batch_size)]
    return out[:-1] if drop_last and len(out) > 1 and len(out[-1]) < batch_size else out


def dassl_lr(epoch: int, *, epochs: int, base_lr: float, warmup_epochs: int, warmup_lr: float = WARMUP_LR) -> float:
    """The learning rate of epoch `epoch` (from 0) under Dassl's cosine schedule wrapped in a constant warm-up:
    CosineAnnealingLR(MAX_EPOCH) stepped once per epoch after ConstantWarmupScheduler's warm-up epochs
    (KaiyangZhou/Dassl.pytorch dassl/optim/lr_scheduler.py:L27-54, L128-141)."""
    if epoch < warmup_epochs:
        return warmup_lr
    return 0.5 * base_lr * (1 + math.cos(math.pi * (epoch - warmup_epochs) / epochs))


def cosine_lr(step: int, total: int, base_lr: float) -> float:
    """Cosine annealing from `base_lr` to 0 over `total` steps, `step` from 0 (Tip-Adapter-F's
    CosineAnnealingLR(optimizer, epochs * batches), stepped after every batch)."""
    return 0.5 * base_lr * (1 + math.cos(math.pi * min(1.0, step / max(1, total))))


def make_optimizer(
    params: Iterable[torch.nn.Parameter], *, name: str, lr: float, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """SGD as Dassl builds it (momentum 0.9, no dampening, no Nesterov) or AdamW as Tip-Adapter-F (eps 1e-4)."""
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
    schedule: str = "dassl",
    warmup_epochs: int = 0,
    lr_log: list[float] | None = None,
) -> list[float]:
    """Minimise `loss_fn(batch indices)` over `epochs` shuffled passes under `schedule` ("dassl" or
    "step_cosine", see the module docstring). Returns the mean loss of each epoch; `lr_log`, when given,
    receives the learning rate of every step."""
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise OodbenchError(
            f"Training needs epochs >= 1, batch_size >= 1 and lr > 0 "
            f"(got epochs={epochs}, batch_size={batch_size}, lr={lr}); fix the method's config."
        )
    if schedule not in SCHEDULES:
        raise OodbenchError(f"Unknown schedule {schedule!r}; use one of {SCHEDULES}.")
    dassl = schedule == "dassl"
    drop_last = dassl and n >= batch_size  # Dassl: drop_last = is_train and len(data) >= batch_size
    opt = make_optimizer(params, name=optimizer, lr=lr, weight_decay=weight_decay)
    total = epochs * (n // batch_size if drop_last else math.ceil(n / batch_size))
    step, history = 0, []
    for epoch in range(epochs):
        losses = []
        for idx in batches(n, batch_size, generator, drop_last=drop_last):
            rate = (
                dassl_lr(epoch, epochs=epochs, base_lr=lr, warmup_epochs=warmup_epochs)
                if dassl
                else cosine_lr(step, total, lr)
            )
            for group in opt.param_groups:
                group["lr"] = rate
            if lr_log is not None:
                lr_log.append(rate)
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
