"""OOD scores: how OOD-ness is read off a method's output. Every score is higher-is-more-ID.

All scores of a run are computed from one MethodOutput, so a run computes logits once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from benchmark.errors import OodbenchError
from benchmark.registry import Registry
from methods.base import MethodOutput


@dataclass(frozen=True)
class Score:
    name: str
    fn: Callable[[MethodOutput], torch.Tensor]
    needs_local: bool = False
    description: str = ""

    def __call__(self, output: MethodOutput) -> torch.Tensor:
        return self.fn(output)


SCORES: Registry[Score] = Registry("score")


def register_score(name: str, *, needs_local: bool = False) -> Callable:
    def deco(fn: Callable[[MethodOutput], torch.Tensor]) -> Callable:
        doc = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        SCORES.add(name, Score(name=name, fn=fn, needs_local=needs_local, description=doc))
        return fn

    return deco


MCM_TEMPERATURE = 1.0


def mcm_from_similarities(similarities: torch.Tensor, temperature: float = MCM_TEMPERATURE) -> torch.Tensor:
    """Maximum concept matching: max softmax of cosine similarities / T over the classes (dim -1)."""
    return torch.softmax(similarities.float() / temperature, dim=-1).max(dim=-1).values


@register_score("mcm")
def mcm(out: MethodOutput) -> torch.Tensor:
    """MCM (Ming et al., NeurIPS 2022): max softmax of cosine similarities with temperature T=1."""
    return mcm_from_similarities(out.logits / out.logit_scale)


@register_score("msp")
def msp(out: MethodOutput) -> torch.Tensor:
    """Maximum softmax probability of the logit-scaled logits (Hendrycks & Gimpel, 2017)."""
    return torch.softmax(out.logits.float(), dim=-1).max(dim=-1).values


@register_score("energy")
def energy(out: MethodOutput) -> torch.Tensor:
    """Negative free energy, logsumexp of the logits (Liu et al., 2020)."""
    return torch.logsumexp(out.logits.float(), dim=-1)


@register_score("max_logit")
def max_logit(out: MethodOutput) -> torch.Tensor:
    """Maximum logit (Hendrycks et al., 2022)."""
    return out.logits.float().max(dim=-1).values


@register_score("entropy")
def neg_entropy(out: MethodOutput) -> torch.Tensor:
    """Negated entropy of the softmax over the logits (confident = more ID)."""
    logp = torch.log_softmax(out.logits.float(), dim=-1)
    return (logp.exp() * logp).sum(dim=-1)


@register_score("gl_mcm", needs_local=True)
def gl_mcm(out: MethodOutput) -> torch.Tensor:
    """GL-MCM (Miyai et al., 2023): MCM of the global feature plus the largest MCM over patch tokens."""
    if out.local_logits is None:
        raise OodbenchError(
            "gl_mcm needs patch-token logits, but the method returned none; its predict must fill "
            "MethodOutput.local_logits when the batch carries `local` features."
        )
    global_ = mcm_from_similarities(out.logits / out.logit_scale)
    local = mcm_from_similarities(out.local_logits / out.logit_scale).amax(dim=-1)
    return global_ + local
