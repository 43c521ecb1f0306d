"""GalLoP (Lafon et al., ECCV 2024): global and local prompts learned together for few-shot OOD detection.

Four global contexts are learned against the image embedding and four local contexts against patch
tokens, each local context scored by the mean of its top-k patches (k = 5, 10, 15, 20, a different k
per context), and a linear map on the patch tokens (identity at start) learned before CLIP's visual
projection. At test time the logits are the global prompts' mean cosine (what GalLoP's MCM reads) and
the patch logits the local prompts' mean cosine per patch, so the shared `gl_mcm` score is GalLoP's
GL-MCM. It trains on cached features: the image embedding and the patch tokens before the projection
(feature kind `local_width`). Defaults follow MarcLafon/gallop (docs/fidelity-negatives.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmark.errors import OodbenchError
from methods.base import METHODS, FeatureBatch, FitData, Method, MethodConfig, MethodOutput, l2_normalize, param
from methods.shared.class_prompts import ClassPrompts, context_from_words


@dataclass(frozen=True)
class GalLoPConfig(MethodConfig):
    # Defaults: MarcLafon/gallop scripts/run_imagenet.sh and gallop/train.py.
    template: str = "A photo of a {}"  # its words (without {}) initialise every context
    n_global_prompts: int = param(4, low=1, high=64)
    n_local_prompts: int = param(4, low=1, high=64)
    learn_local_proj: bool = True  # width x width linear map on the patch tokens, identity at start
    topk: tuple[int, ...] = param((5, 10, 15, 20), low=1, high=100_000)  # patches averaged, per local prompt
    global_dropout_p: float = param(0.75, low=0.0, high=1.0)  # share of global prompts dropped per image
    use_global_loss: bool = True
    use_local_loss: bool = True
    lr: float = param(0.002, low=1e-8, high=10.0)  # SGD, momentum 0.9, cosine over epochs, no warm-up
    momentum: float = param(0.9, low=0.0, high=1.0)
    weight_decay: float = param(0.01, low=0.0, high=1.0)
    epochs: int = param(50, low=1, high=1000)
    batch_size: int = param(128, low=1, high=65536)


def topk_reduce(local: torch.Tensor, topk: tuple[int, ...]) -> torch.Tensor:
    """[B, P, C, m] patch cosines -> [B, C, m]: per local prompt i the mean of its top-k_i patches per class."""
    patches, prompts = local.shape[1], local.shape[3]
    if len(topk) not in (1, prompts):
        raise OodbenchError(f"topk gives {len(topk)} values for {prompts} local prompts; give one or one per prompt")
    ks = [min(k, patches) for k in (topk * prompts if len(topk) == 1 else topk)]
    top = local.topk(max(ks), dim=1).values  # [B, k, C, m]
    return torch.stack([top[:, :k, :, i].mean(dim=1) for i, k in enumerate(ks)], dim=-1)


@METHODS.register("gallop")
class GalLoP(Method):
    Config = GalLoPConfig
    needs = frozenset({"local_width"})
    paper = (
        "Lafon, Ramzi, Rambour, Audebert, Thome. GalLoP: Learning Global and Local Prompts for "
        "Vision-Language Models. ECCV 2024."
    )

    def __init__(self, *, config: GalLoPConfig, context) -> None:
        super().__init__(config=config, context=context)
        if config.use_local_loss and len(config.topk) not in (1, config.n_local_prompts):
            raise OodbenchError(
                f"GalLoP's topk has {len(config.topk)} values for {config.n_local_prompts} local prompts; "
                f"give one value or one per local prompt."
            )
        init = context_from_words(context.backbone, config.template.replace("{}", " ").replace("_", " ").strip())
        self.prompts = ClassPrompts(backbone=context.backbone, classnames=context.classnames, n_ctx=len(init))
        self.global_ctx = torch.nn.Parameter(init.float()[None].repeat(config.n_global_prompts, 1, 1))
        self.local_ctx = torch.nn.Parameter(init.float()[None].repeat(config.n_local_prompts, 1, 1))
        visual = context.backbone.model.visual
        self.proj = getattr(visual, "proj", None)
        width = int(self.proj.shape[0]) if self.proj is not None else context.text_features.shape[1]
        self.local_proj = torch.nn.Linear(width, width, bias=False).to(context.device)
        with torch.no_grad():
            self.local_proj.weight.copy_(torch.eye(width))
        self.text: tuple[torch.Tensor, torch.Tensor] | None = None

    # -- features

    def patch_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """Patch tokens before the projection [B, P, width] -> unit patch features in the joint space [B, P, D]."""
        x = self.local_proj(tokens.float())
        if self.proj is not None:
            x = x @ self.proj.float()
        return l2_normalize(x)

    def text_features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit text features of the global [C, G, D] and local [C, L, D] prompts."""
        return l2_normalize(self.prompts(self.global_ctx)), l2_normalize(self.prompts(self.local_ctx))

    # -- training

    def loss(self, g: torch.Tensor, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        c, scale = self.config, self.ctx.backbone.logit_scale
        glob_text, loc_text = self.text_features()
        total = torch.zeros((), device=g.device)
        if c.use_local_loss:
            local = torch.einsum("bpd,cmd->bpcm", self.patch_features(tokens), loc_text)  # [B, P, C, m]
            reduced = topk_reduce(local, c.topk)  # [B, C, m]
            total = total + F.cross_entropy(scale * reduced, labels[:, None].expand(-1, reduced.shape[-1]))
        if c.use_global_loss:
            glob = torch.einsum("bd,cnd->bcn", g, glob_text)  # [B, C, n]
            n = glob.shape[-1]
            keep = max(n - int(c.global_dropout_p * n), 1)
            pick = torch.randint(n, (len(g), 1, keep), generator=self.ctx.generator).to(g.device)
            kept = glob.gather(-1, pick.expand(-1, glob.shape[1], -1)).mean(-1)
            total = total + F.cross_entropy(scale * kept, labels)
        return total

    def fit(self, data: FitData) -> None:
        c = self.config
        if data.train.local is None:
            raise OodbenchError(
                "GalLoP trains on patch tokens but FitData.train.local is empty; the harness extracts them "
                "(feature kind local_width) when the method declares needs={'local_width'}."
            )
        g, tokens, labels = l2_normalize(data.train.global_), data.train.local, data.labels
        params = [self.global_ctx, self.local_ctx] + ([self.local_proj.weight] if c.learn_local_proj else [])
        if not c.learn_local_proj:
            self.local_proj.weight.requires_grad_(False)
        opt = torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        n = len(labels)
        # the reference's loader drops the last partial batch; a split smaller than one batch is one batch
        per_epoch = max(1, n // c.batch_size) if n >= c.batch_size else 1
        size = c.batch_size if n >= c.batch_size else n
        for epoch in range(c.epochs):
            for group in opt.param_groups:  # CosineAnnealingLR(T_max=epochs), stepped after every epoch
                group["lr"] = 0.5 * c.lr * (1 + math.cos(math.pi * epoch / c.epochs))
            perm = torch.randperm(n, generator=self.ctx.generator).to(labels.device)
            for b in range(per_epoch):
                idx = perm[b * size : (b + 1) * size]
                loss = self.loss(g[idx], tokens[idx], labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if not torch.isfinite(loss):
                    raise OodbenchError(f"GalLoP training diverged (loss {float(loss)}); lower lr.")
        with torch.no_grad():
            glob_text, loc_text = self.text_features()
            # the mean over prompts of cosines is the cosine with the mean prompt feature
            self.text = (glob_text.mean(dim=1), loc_text.mean(dim=1))

    def predict(self, batch: FeatureBatch) -> MethodOutput:
        if self.text is None:
            raise OodbenchError("GalLoP is few-shot: fit it before predicting.")
        glob_text, loc_text = self.text
        scale = self.ctx.backbone.logit_scale
        local = None if batch.local is None else scale * self.patch_features(batch.local) @ loc_text.T
        return MethodOutput(
            logits=scale * l2_normalize(batch.global_) @ glob_text.T, logit_scale=scale, local_logits=local
        )
