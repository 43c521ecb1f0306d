"""Prompt learning on a frozen open_clip text encoder (shared by CoOp, CoCoOp and LoCoOp).

A prompt is `[SOS] [V]_1 ... [V]_M [CLASS] . [EOS]` (CoOp's unified context, class token at the
end): the M context vectors are learned, the token embeddings of the rest stay fixed, and the
frozen text transformer of the backbone turns the sequence into a class embedding. Everything is
built from `backbone.model` (token_embedding, positional_embedding, transformer, ln_final,
text_projection, attn_mask, text_pool_type) as open_clip's `CLIP.encode_text` uses them.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.backbones import Backbone
from benchmark.errors import OodbenchError
from methods.base import l2_normalize

CTX_INIT_STD = 0.02  # CoOp: random context vectors ~ N(0, 0.02^2)


class TextEncoder:
    """The backbone's frozen text tower, fed token *embeddings* instead of token ids."""

    def __init__(self, backbone: Backbone) -> None:
        m = backbone.model
        missing = [
            a for a in ("token_embedding", "positional_embedding", "transformer", "ln_final") if not hasattr(m, a)
        ]
        if missing:
            raise OodbenchError(
                f"Prompt learning needs open_clip's built-in text tower; {backbone.arch} "
                f"({type(m).__name__}) lacks {missing}. Use an adapter or linear_probe instead."
            )
        self.model = m
        self.pool_type = getattr(m, "text_pool_type", "argmax")
        self.eos_id = getattr(m, "text_eos_id", None)
        self.context_length = int(m.positional_embedding.shape[0])
        self.width = int(m.token_embedding.weight.shape[1])

    @torch.no_grad()
    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.token_embedding(tokens).float()

    def pool_index(self, tokens: torch.Tensor) -> torch.Tensor:
        """Position whose output becomes the text embedding, as open_clip's text_global_pool picks it."""
        if self.pool_type == "argmax":
            return tokens.argmax(dim=-1)
        if self.pool_type == "eos" and self.eos_id is not None:
            return (tokens == self.eos_id).int().argmax(dim=-1)
        if self.pool_type == "first":
            return torch.zeros(len(tokens), dtype=torch.long, device=tokens.device)
        if self.pool_type == "last":
            return torch.full((len(tokens),), tokens.shape[1] - 1, dtype=torch.long, device=tokens.device)
        raise OodbenchError(f"Text pooling {self.pool_type!r} of this backbone is not supported by prompt learning.")

    def __call__(self, embeddings: torch.Tensor, pool_index: torch.Tensor) -> torch.Tensor:
        """Prompt embeddings [N, L, W] -> text features [N, D] (not normalised)."""
        m = self.model
        x = embeddings + m.positional_embedding.float()
        x = m.transformer(x, attn_mask=m.attn_mask)
        x = m.ln_final(x)
        x = x[torch.arange(len(x), device=x.device), pool_index]
        proj = m.text_projection
        if proj is None:
            return x
        return proj(x) if isinstance(proj, nn.Linear) else x @ proj


class PromptLearner(nn.Module):
    """Learned context vectors shared by every class (CoOp's unified context, class token at the end)."""

    def __init__(
        self, *, backbone: Backbone, classnames: list[str], n_ctx: int, ctx_init: str, generator: torch.Generator
    ) -> None:
        super().__init__()
        self.encoder = TextEncoder(backbone)
        tok = backbone.tokenizer
        device = backbone.device
        if ctx_init.strip():
            init_ids = _token_ids(tok, ctx_init)
            n_ctx = len(init_ids)
            ctx = self.encoder.embed(torch.tensor([init_ids], device=device))[0]
        else:
            if n_ctx < 1:
                raise OodbenchError(f"n_ctx must be at least 1 (got {n_ctx}).")
            ctx = torch.randn(n_ctx, self.encoder.width, generator=generator).to(device) * CTX_INIT_STD
        longest = max(classnames, key=lambda c: len(_token_ids(tok, c)))
        need = n_ctx + len(_token_ids(tok, longest + ".")) + 2
        if need > self.encoder.context_length:
            raise OodbenchError(
                f"{n_ctx} context vectors plus the class name {longest!r} need {need} tokens, more than the "
                f"backbone's text context of {self.encoder.context_length}; lower n_ctx or use a shorter ctx_init."
            )
        prompts = [" ".join(["X"] * n_ctx) + f" {name}." for name in classnames]
        tokens = tok(prompts).to(device)
        emb = self.encoder.embed(tokens)
        self.n_ctx = n_ctx
        self.register_buffer("prefix", emb[:, :1].clone(), persistent=False)  # SOS
        self.register_buffer("suffix", emb[:, 1 + n_ctx :].clone(), persistent=False)  # class, '.', EOS, padding
        self.register_buffer("pool_index", self.encoder.pool_index(tokens), persistent=False)
        self.ctx = nn.Parameter(ctx.float().clone())

    def prompts(self, shift: torch.Tensor | None = None) -> torch.Tensor:
        """Prompt embeddings [C, L, W]; with per-image context shifts [B, W] (CoCoOp) [B, C, L, W]."""
        c = self.prefix.shape[0]
        if shift is None:
            ctx = self.ctx[None].expand(c, -1, -1)
            return torch.cat([self.prefix, ctx, self.suffix], dim=1)
        ctx = self.ctx[None] + shift[:, None]  # [B, M, W]
        b = len(shift)
        ctx = ctx[:, None].expand(b, c, -1, -1)
        return torch.cat([self.prefix[None].expand(b, -1, -1, -1), ctx, self.suffix[None].expand(b, -1, -1, -1)], dim=2)

    def text_features(self, shift: torch.Tensor | None = None) -> torch.Tensor:
        """L2-normalised class embeddings [C, D], or [B, C, D] with per-image shifts."""
        p = self.prompts(shift)
        if shift is None:
            return l2_normalize(self.encoder(p, self.pool_index))
        b, c, length, w = p.shape
        feats = self.encoder(p.reshape(b * c, length, w), self.pool_index.repeat(b))
        return l2_normalize(feats).reshape(b, c, -1)


def _token_ids(tokenizer, text: str) -> list[int]:
    """Token ids of `text` without SOS/EOS, through the backbone's own tokenizer."""
    row = tokenizer([text])[0].tolist()
    eos = getattr(tokenizer, "eot_token_id", None)
    end = row.index(eos) if eos in row else row.index(max(row))  # CLIP's EOS is its largest id
    return row[1:end]


def coop_schedule_epochs(shots: int) -> int:
    """CoOp (Zhou et al., IJCV 2022, Sec. 4.1): 50 epochs at 1 shot, 100 at 2-4, 200 at 8-16."""
    from methods.shared.training import epochs_for_shots

    return epochs_for_shots(shots, ((1, 50), (4, 100), (16, 200)))
