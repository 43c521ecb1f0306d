"""NegPrompt (Li et al., CVPR 2024): learned negative prompts for few-shot open-set / OOD detection.

Two stages on the few-shot split. First one positive context ("a photo of a" initially) is learned in
front of every class name with cross-entropy (CoOp). Then, with the positive context frozen, K negative
contexts (copies of the positive one plus tiny noise) are learned so that each class's negative prompts
match its own images as a multi-label target (MultiLabelSoftMarginLoss over all C(1+K) prompts), move
away from the class's positive prompt and spread apart. At test time an image is ID when its softmax
mass over all prompts sits on a positive prompt (the `negprompt` score). Defaults follow
mala-lab/NegPrompt (docs/fidelity-negatives.md gives file and line).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.errors import OodbenchError
from methods.base import METHODS, FeatureBatch, FitData, Method, MethodConfig, MethodOutput, l2_normalize, param
from methods.scores import ScoreInput, register_score
from methods.shared.class_prompts import ClassPrompts, context_from_words

NEG_PROMPT_LOGITS = "neg_prompt_logits"


@dataclass(frozen=True)
class NegPromptConfig(MethodConfig):
    # Defaults: mala-lab/NegPrompt osr_nega_prompt.py, scripts/train_test_ood.py, core/train_clip.py.
    ctx_init: str = "a photo of a"  # CTX_INIT 'a photo of a "{}"' (its 4 words are the context)
    n_negative: int = param(2, low=1, high=64)  # NEGA_CTX
    negative_init_noise: float = param(1e-5, low=0.0, high=1.0)  # uniform noise around the positive context
    negative_weight: float = param(1.0, low=0.0, high=1e6)
    distance_weight: float = param(0.1, low=0.0, high=1e6)
    nega_nega_weight: float = param(0.05, low=0.0, high=1e6)
    lr: float = param(0.1, low=1e-8, high=10.0)  # SGD without momentum or weight decay
    cosine_t_max: int = param(50, low=1, high=100_000)  # CosineAnnealingLR(T_max=50), stepped per batch and epoch
    epochs: int = param(100, low=1, high=1000)  # stage 1 (positive context)
    negative_epochs: int = param(100, low=1, high=1000)  # stage 3 (negative contexts)
    batch_size: int = param(64, low=1, high=65536)


def cosine_rate(step: int, *, base: float, t_max: int) -> float:
    """torch's CosineAnnealingLR (eta_min 0) after `step` steps: periodic past t_max, as the reference runs it."""
    return 0.5 * base * (1 + math.cos(math.pi * step / t_max))


@METHODS.register("negprompt")
class NegPrompt(Method):
    Config = NegPromptConfig
    provides = frozenset({"local", NEG_PROMPT_LOGITS})
    paper = (
        "Li, Pang, Zhao, Tian, Zhang, Liu. Learning Transferable Negative Prompts for Out-of-Distribution "
        "Detection (NegPrompt). CVPR 2024."
    )

    def __init__(self, *, config: NegPromptConfig, context) -> None:
        super().__init__(config=config, context=context)
        ctx = context_from_words(context.backbone, config.ctx_init)
        self.prompts = ClassPrompts(backbone=context.backbone, classnames=context.classnames, n_ctx=len(ctx))
        self.positive = torch.nn.Parameter(ctx.float())  # [M, W]
        self.negative: torch.nn.Parameter | None = None  # [K, M, W] after stage 3
        self.text: tuple[torch.Tensor, torch.Tensor] | None = None

    # -- text features

    def positive_text(self) -> torch.Tensor:
        return l2_normalize(self.prompts(self.positive[None])[:, 0])  # [C, D]

    def negative_text(self) -> torch.Tensor:
        return l2_normalize(self.prompts(self.negative))  # [C, K, D]

    # -- training

    def _loop(self, params: list[torch.nn.Parameter], loss_fn, n: int, epochs: int) -> None:
        """SGD in the reference's order: one sampler permutation drawn once and reused every epoch, the
        cosine rate stepped after every batch and once more after every epoch."""
        c = self.config
        opt = torch.optim.SGD(params, lr=c.lr)
        order = torch.randperm(n, generator=self.ctx.generator)
        step = 0
        for _ in range(epochs):
            for s in range(0, n, c.batch_size):
                idx = order[s : s + c.batch_size]
                for group in opt.param_groups:
                    group["lr"] = cosine_rate(step, base=c.lr, t_max=c.cosine_t_max)
                loss = loss_fn(idx)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                if not torch.isfinite(loss):
                    raise OodbenchError(f"NegPrompt training diverged (loss {float(loss)}); lower lr.")
            step += 1  # the reference also steps its scheduler after each epoch

    def fit(self, data: FitData) -> None:
        c, scale = self.config, self.ctx.backbone.logit_scale
        feats = l2_normalize(data.train.global_)
        labels = data.labels
        n_cls = len(self.ctx.classnames)

        def positive_loss(idx: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(scale * feats[idx] @ self.positive_text().T, labels[idx])

        self._loop([self.positive], positive_loss, len(labels), c.epochs)

        with torch.no_grad():
            pos_text = self.positive_text()
            noise = torch.rand(c.n_negative, *self.positive.shape, generator=self.ctx.generator) * 2 - 1
            init = self.positive.detach()[None] + c.negative_init_noise * noise.to(self.positive.device)
        self.positive.requires_grad_(False)
        self.negative = torch.nn.Parameter(init)
        multilabel = torch.nn.MultiLabelSoftMarginLoss()

        def negative_loss(idx: torch.Tensor) -> torch.Tensor:
            neg_text = self.negative_text()  # [C, K, D]
            text = torch.cat([pos_text[:, None], neg_text], dim=1)  # [C, 1 + K, D], per class positive first
            logits = scale * feats[idx] @ text.reshape(-1, text.shape[-1]).T  # [B, C(1 + K)]
            target = torch.zeros(len(idx), n_cls, 1 + c.n_negative, device=logits.device)
            target[torch.arange(len(idx)), labels[idx]] = 1.0  # the image's class: positive and negatives
            to_other = multilabel(logits, target.reshape(len(idx), -1))
            to_positive = -(1 - torch.einsum("cd,ckd->ck", pos_text, neg_text)).mean()
            spread = -(1 - neg_text.mean(dim=1).norm(dim=-1)).mean()
            return c.negative_weight * to_other + c.distance_weight * to_positive + c.nega_nega_weight * spread

        self._loop([self.negative], negative_loss, len(labels), c.negative_epochs)
        with torch.no_grad():
            self.text = (self.positive_text(), self.negative_text().reshape(-1, pos_text.shape[-1]))

    def predict(self, batch: FeatureBatch) -> MethodOutput:
        if self.text is None:
            raise OodbenchError("NegPrompt is few-shot: fit it before predicting.")
        pos, neg = self.text
        scale = self.ctx.backbone.logit_scale
        f = l2_normalize(batch.global_)
        local = None if batch.local is None else scale * l2_normalize(batch.local) @ pos.T
        return MethodOutput(
            logits=scale * f @ pos.T,
            logit_scale=scale,
            local_logits=local,
            extra={NEG_PROMPT_LOGITS: scale * f @ neg.T},
        )


@register_score("negprompt", params={"T": 1.0}, requires=frozenset({NEG_PROMPT_LOGITS}))
def negprompt_score(out: ScoreInput, *, T: float) -> np.ndarray:  # noqa: N803
    """NegPrompt's score: the largest softmax probability of a positive prompt, the softmax of cosines / T
    taken over every positive and negative prompt."""
    if NEG_PROMPT_LOGITS not in out.extra:
        raise OodbenchError(f"The negprompt score reads extra[{NEG_PROMPT_LOGITS!r}], which these outputs lack.")
    if not T > 0:
        raise OodbenchError(f"Score 'negprompt' parameter 'T' must be > 0, got {T}.")
    pos = out.logits.astype(np.float64) / (out.logit_scale * T)
    neg = np.asarray(out.extra[NEG_PROMPT_LOGITS], dtype=np.float64) / (out.logit_scale * T)
    top = np.maximum(pos.max(axis=1), neg.max(axis=1))[:, None]
    total = np.exp(pos - top).sum(axis=1) + np.exp(neg - top).sum(axis=1)
    return np.exp(pos.max(axis=1) - top[:, 0]) / total
