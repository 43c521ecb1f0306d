"""The backbone's frozen text tower fed token embeddings, cut after the last pooled position.

CLIP's text transformer is causal and pools the end-of-text token, so positions after the longest
prompt's end-of-text token (the padding up to 77) never reach the output: running the tower on the
sequence cut there gives the same features as `encode_text` up to float rounding, in a fraction of the
time (a class or word prompt uses about 8 of the 77 positions). Mining encodes tens of thousands of word
prompts and prompt learners run the tower at every step, so both use this. A tower without a causal mask,
or one pooling elsewhere, runs on the full sequence.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from benchmark.errors import OodbenchError


def _parts(model: Any) -> None:
    missing = [
        a for a in ("token_embedding", "positional_embedding", "transformer", "ln_final") if not hasattr(model, a)
    ]
    if missing:
        raise OodbenchError(
            f"This method needs open_clip's built-in text tower; {type(model).__name__} lacks {missing}."
        )


def trimmable(model: Any) -> bool:
    """True when cutting the sequence after the pooled position cannot change the output."""
    return (
        getattr(model, "attn_mask", None) is not None
        and getattr(model, "text_pool_type", "argmax") in ("argmax", "eos")
        and getattr(model.transformer, "batch_first", True)
    )


def pool_index(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    """The position whose output becomes the text feature, as open_clip's text_global_pool picks it."""
    kind = getattr(model, "text_pool_type", "argmax")
    if kind == "argmax":
        return tokens.argmax(dim=-1)  # CLIP's end-of-text token has the largest id
    if kind == "eos":
        return (tokens == model.text_eos_id).int().argmax(dim=-1)
    if kind == "first":
        return torch.zeros(len(tokens), dtype=torch.long, device=tokens.device)
    if kind == "last":
        return torch.full((len(tokens),), tokens.shape[1] - 1, dtype=torch.long, device=tokens.device)
    raise OodbenchError(f"Text pooling {kind!r} of this backbone is not supported.")


@torch.no_grad()
def token_embeddings(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    _parts(model)
    return model.token_embedding(tokens).float()


def encode_embeddings(model: Any, embeddings: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """Prompt embeddings [N, L, W] -> text features [N, D] (float32, not normalised), `pool` [N] the pooled
    positions; differentiable (prompt learners train through it)."""
    _parts(model)
    length = int(pool.max()) + 1 if trimmable(model) else embeddings.shape[1]
    x = embeddings[:, :length].float() + model.positional_embedding[:length].float()
    mask = model.attn_mask[:length, :length] if getattr(model, "attn_mask", None) is not None else None
    x = model.transformer(x, attn_mask=mask)
    x = model.ln_final(x)[torch.arange(len(x), device=x.device), pool]
    proj = model.text_projection
    if proj is None:
        return x
    return proj(x) if isinstance(proj, nn.Linear) else x @ proj
