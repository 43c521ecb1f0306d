"""Several learned contexts in front of each class name, as NegPrompt and GalLoP build their prompts.

A prompt is `[SOS] ctx_1 ... ctx_M <class name> [EOS]`: no full stop after the name (unlike CoOp's
`PromptLearner`), and any number of contexts (P) share the class tokens, so one call encodes C x P
prompts. The frozen text tower runs cut after the class names (methods.shared.text_tower).
"""

from __future__ import annotations

import torch

from benchmark.backbones import Backbone
from benchmark.errors import OodbenchError
from methods.shared.text_tower import encode_embeddings, pool_index, token_embeddings, trimmable


class ClassPrompts:
    """Encodes contexts [P, M, W] in front of every class name into text features [C, P, D] (not normalised)."""

    def __init__(self, *, backbone: Backbone, classnames: list[str], n_ctx: int) -> None:
        if n_ctx < 1:
            raise OodbenchError(f"a prompt context needs at least 1 token, got {n_ctx}")
        self.model = backbone.model
        self.n_ctx = n_ctx
        placeholder = " ".join(["X"] * n_ctx)
        tokens = backbone.tokenizer([f"{placeholder} {name}" for name in classnames]).to(backbone.device)
        pool = pool_index(self.model, tokens)
        if int(pool.max()) >= tokens.shape[1] - 1:  # the tokenizer cut the prompt
            raise OodbenchError(
                f"{n_ctx} context tokens plus the longest class name fill the backbone's text context of "
                f"{tokens.shape[1]} tokens; use a shorter context."
            )
        # the padding after the longest prompt never reaches the output of a causal tower: drop it here already
        length = int(pool.max()) + 1 if trimmable(self.model) else tokens.shape[1]
        emb = token_embeddings(self.model, tokens[:, :length])
        self.prefix = emb[:, :1]  # SOS
        self.suffix = emb[:, 1 + n_ctx :]  # class name, EOS (and padding)
        self.pool = pool

    def __call__(self, ctx: torch.Tensor) -> torch.Tensor:
        """Text features [C, P, D] of the contexts `ctx` [P, M, W] (one prompt per class and context)."""
        if ctx.ndim != 3 or ctx.shape[1] != self.n_ctx:
            raise OodbenchError(f"contexts must be [prompts, {self.n_ctx}, width], got {tuple(ctx.shape)}")
        c, p = self.prefix.shape[0], ctx.shape[0]
        x = torch.cat(
            [
                self.prefix[:, None].expand(c, p, -1, -1),
                ctx[None].expand(c, -1, -1, -1),
                self.suffix[:, None].expand(c, p, -1, -1),
            ],
            dim=2,
        )
        feats = encode_embeddings(self.model, x.reshape(c * p, *x.shape[2:]), self.pool.repeat_interleave(p))
        return feats.reshape(c, p, -1)


def context_from_words(backbone: Backbone, words: str) -> torch.Tensor:
    """Token embeddings [M, W] of `words` (without SOS and EOS): the usual initial context ("a photo of a")."""
    tokens = backbone.tokenizer([words]).to(backbone.device)
    n = int(pool_index(backbone.model, tokens)[0]) - 1
    if not words.strip() or n < 1:
        raise OodbenchError(f"the initial context {words!r} has no tokens; give words such as 'a photo of a'")
    return token_embeddings(backbone.model, tokens)[0, 1 : 1 + n].clone()
