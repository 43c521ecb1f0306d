"""Low-rank adapters (LoRA) on the attention of open_clip ViT CLIP models, placed as CLIP-LoRA places them.

CLIP-LoRA (Zanella & Ben Ayed, CVPRW 2024; MaxZanella/CLIP-LoRA) adds a rank-r update `s * B @ A` to the
query, key and value projections of every attention block of both encoders, with `s = alpha / sqrt(r)`,
A drawn like an nn.Linear weight (uniform in +-1/sqrt(fan_in)), B zero, and dropout applied to the input of
the low-rank branch only. Everything else in the model is frozen.

How it is done here: each attention module (torch's nn.MultiheadAttention, or open_clip's own `Attention` in
"custom" blocks) is wrapped by `LoraAttention`, which keeps the original module as `base` and owns the
low-rank factors. Without dropout (eval mode, or dropout 0) the wrapper runs the original module with its
packed `in_proj_weight` (and `out_proj.weight` for "o") replaced by `W + s * B @ A`, through the module's own
code path: before training (B = 0) the outputs equal the frozen original model's bit for bit under no_grad
(how evaluation runs; with autograd on, torch may choose another kernel for a weight that requires grad and
the outputs then agree to float rounding), and `merge_lora`, which writes the same sum into the plain weights
and removes the wrappers, gives the same outputs again.
With dropout in training the q/k/v projections are computed explicitly, because dropout on the branch input
is not a change of weights.

Randomness: A is drawn from the caller's torch.Generator (on the CPU, so the draw is the same on every
device); dropout masks come from one generator per model, seeded from the same caller generator, whose
state the training loop can save and restore (`lora_rng`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import OodbenchError

PROJECTIONS = ("q", "k", "v", "o")
ENCODERS = ("both", "vision", "text")
# CLIP-LoRA's named block positions (loralib/utils.py INDEX_POSITIONS_TEXT / INDEX_POSITIONS_VISION), defined
# there for 12-block encoders; "all" and the halves also cover other depths (ViT-L/14's table is the halves).
POSITIONS_12 = {
    "bottom": (0, 1, 2, 3),
    "mid": (4, 5, 6, 7),
    "up": (8, 9, 10, 11),
    "top3": (9, 10, 11),
}


@dataclass(frozen=True)
class LoraSpec:
    """Where the adapters go and their shape. Defaults: CLIP-LoRA run_utils.py get_arguments()."""

    rank: int = 2
    alpha: float = 1.0
    dropout: float = 0.25
    params: tuple[str, ...] = ("q", "k", "v")
    encoder: str = "both"
    position: str = "all"

    @property
    def scaling(self) -> float:
        """alpha / sqrt(rank), as CLIP-LoRA's LoRALayer sets it (not LoRA's alpha / rank)."""
        return self.alpha / math.sqrt(self.rank)

    def validate(self) -> None:
        if self.rank < 1:
            raise OodbenchError(f"LoRA rank must be >= 1 (got {self.rank}).")
        if not 0.0 <= self.dropout < 1.0:
            raise OodbenchError(f"LoRA dropout must be in [0, 1) (got {self.dropout}).")
        bad = [p for p in self.params if p not in PROJECTIONS]
        if bad or not self.params or len(set(self.params)) != len(self.params):
            raise OodbenchError(f"LoRA params must be distinct names from {PROJECTIONS} (got {list(self.params)}).")
        if self.encoder not in ENCODERS:
            raise OodbenchError(f"LoRA encoder must be one of {ENCODERS} (got {self.encoder!r}).")

    def to_metadata(self) -> dict[str, str]:
        """String metadata for a safetensors header, read back by `from_metadata`."""
        return {
            "lora_rank": str(self.rank),
            "lora_alpha": repr(float(self.alpha)),
            "lora_dropout": repr(float(self.dropout)),
            "lora_params": ",".join(self.params),
            "lora_encoder": self.encoder,
            "lora_position": self.position,
        }

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str]) -> LoraSpec:
        try:
            return cls(
                rank=int(meta["lora_rank"]),
                alpha=float(meta["lora_alpha"]),
                dropout=float(meta["lora_dropout"]),
                params=tuple(meta["lora_params"].split(",")),
                encoder=meta["lora_encoder"],
                position=meta["lora_position"],
            )
        except (KeyError, ValueError) as e:
            raise OodbenchError(
                f"The LoRA file's metadata is incomplete or malformed ({e!r}); it needs the keys that "
                f"LoraSpec.to_metadata() writes."
            ) from None


class DropoutRng:
    """One dropout generator per device for all adapters of a model, seeded once; its state can be saved and
    restored so a training step retried after running out of memory draws the same masks."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._gens: dict[str, torch.Generator] = {}

    def generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        if key not in self._gens:
            self._gens[key] = torch.Generator(device=device).manual_seed(self.seed)
        return self._gens[key]

    def get_state(self) -> dict[str, torch.Tensor]:
        return {k: g.get_state() for k, g in self._gens.items()}

    def set_state(self, state: Mapping[str, torch.Tensor]) -> None:
        for k in list(self._gens):
            if k in state:
                self._gens[k].set_state(state[k])
            else:  # first used after the snapshot: start it afresh, as it was at the snapshot
                del self._gens[k]


def _attention_kind(module: nn.Module) -> str:
    from open_clip.transformer import Attention

    if isinstance(module, nn.MultiheadAttention):
        if not module._qkv_same_embed_dim or module.in_proj_weight is None:
            raise OodbenchError("LoRA supports nn.MultiheadAttention with one packed in_proj_weight only.")
        return "mha"
    if isinstance(module, Attention):
        return "open_clip"
    raise OodbenchError(
        f"LoRA wraps nn.MultiheadAttention or open_clip's Attention, not {type(module).__name__}; this "
        f"backbone's transformer blocks are not supported."
    )


class LoraAttention(nn.Module):
    """An attention module with low-rank updates on some of q, k, v (rows of the packed in_proj_weight)
    and o (out_proj). Parameters: `lora_A_<p>` [rank, dim] and `lora_B_<p>` [dim, rank] per projection."""

    def __init__(self, base: nn.Module, *, spec: LoraSpec, generator: torch.Generator, rng: DropoutRng) -> None:
        super().__init__()
        self.kind = _attention_kind(base)
        self.base = base
        self.spec = spec
        self.rng = rng  # shared, not a submodule: no state in state_dict
        weight = base.in_proj_weight
        dim = weight.shape[1]
        self.dim = dim
        bound = 1.0 / math.sqrt(dim)  # kaiming_uniform_(a=sqrt(5)) on a [rank, dim] tensor
        for p in spec.params:
            a = (torch.rand(spec.rank, dim, generator=generator, dtype=torch.float64) * 2 - 1) * bound
            self.register_parameter(f"lora_A_{p}", nn.Parameter(a.to(device=weight.device, dtype=weight.dtype)))
            self.register_parameter(
                f"lora_B_{p}", nn.Parameter(torch.zeros(dim, spec.rank, device=weight.device, dtype=weight.dtype))
            )

    def _delta(self, p: str) -> torch.Tensor | None:
        if p not in self.spec.params:
            return None
        return (getattr(self, f"lora_B_{p}") @ getattr(self, f"lora_A_{p}")) * self.spec.scaling

    def merged_weights(self) -> dict[str, torch.Tensor]:
        """The base module's weights with the low-rank updates added (names as in `base`)."""
        out: dict[str, torch.Tensor] = {}
        w = self.base.in_proj_weight
        with torch.autocast(device_type=w.device.type, enabled=False):  # the sum in the weights' own dtype
            qkv = [self._delta(p) for p in ("q", "k", "v")]
            if any(d is not None for d in qkv):
                zero = torch.zeros(self.dim, self.dim, device=w.device, dtype=w.dtype)
                out["in_proj_weight"] = w + torch.cat([zero if d is None else d for d in qkv])
            d_o = self._delta("o")
            if d_o is not None:
                out["out_proj.weight"] = self.base.out_proj.weight + d_o
        return out

    def forward(self, *args, **kwargs):
        if self.training and self.spec.dropout > 0:
            return self._forward_explicit(*args, dropout=self.spec.dropout, **kwargs)
        return torch.func.functional_call(self.base, self.merged_weights(), args, kwargs, strict=False)

    # -- explicit path (dropout on the low-rank branch input) -------------------------------------------

    def _branch(self, p: str, x: torch.Tensor, dropout: float) -> torch.Tensor | None:
        if p not in self.spec.params:
            return None
        if dropout > 0:
            keep = torch.rand(x.shape, generator=self.rng.generator(x.device), device=x.device) >= dropout
            x = x * keep.to(x.dtype) / (1.0 - dropout)
        a, b = getattr(self, f"lora_A_{p}"), getattr(self, f"lora_B_{p}")
        return F.linear(F.linear(x, a), b) * self.spec.scaling

    def _project(self, xs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], dropout: float):
        w, bias = self.base.in_proj_weight, self.base.in_proj_bias
        d = self.dim
        out = []
        for i, (p, x) in enumerate(zip(("q", "k", "v"), xs, strict=True)):
            y = F.linear(x, w[i * d : (i + 1) * d], None if bias is None else bias[i * d : (i + 1) * d])
            extra = self._branch(p, x, dropout)
            out.append(y if extra is None else y + extra)
        return out

    def _out(self, x: torch.Tensor, dropout: float) -> torch.Tensor:
        y = self.base.out_proj(x)
        extra = self._branch("o", x, dropout)
        return y if extra is None else y + extra

    @staticmethod
    def _additive_mask(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
        if mask is None:
            return None
        if mask.dtype == torch.bool:  # True = not allowed to attend (both modules' convention)
            return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
        return mask.to(dtype)

    def _forward_explicit(self, *args, dropout: float, **kwargs):
        if self.kind == "mha":
            return self._mha_explicit(*args, dropout=dropout, **kwargs)
        return self._open_clip_explicit(*args, dropout=dropout, **kwargs)

    def _mha_explicit(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
        *,
        dropout: float,
    ):
        base: nn.MultiheadAttention = self.base
        if key_padding_mask is not None:
            raise OodbenchError("LoRA attention does not take key_padding_mask (open_clip never passes one).")
        if not base.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        n, length, dim = query.shape
        heads = base.num_heads
        q, k, v = self._project((query, key, value), dropout)
        q, k, v = (t.reshape(n, t.shape[1], heads, dim // heads).transpose(1, 2) for t in (q, k, v))
        mask = self._additive_mask(attn_mask, q.dtype)
        if mask is not None and mask.dim() == 3:
            mask = mask.reshape(n, heads, length, k.shape[2])
        x = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=base.dropout if self.training else 0.0,
            is_causal=is_causal and mask is None,
        )
        x = self._out(x.transpose(1, 2).reshape(n, length, dim), dropout)
        if not base.batch_first:
            x = x.transpose(0, 1)
        return x, None  # attention weights are never requested by open_clip (need_weights=False)

    def _open_clip_explicit(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, *, dropout: float):
        base = self.base
        n, length, dim = x.shape
        heads = base.num_heads
        q, k, v = self._project((x, x, x), dropout)
        q, k, v = (t.reshape(n, length, heads, -1).transpose(1, 2) for t in (q, k, v))
        if attn_mask is not None and attn_mask.ndim == 3:
            attn_mask = attn_mask.reshape(n, heads, length, length)
        mask = self._additive_mask(attn_mask, q.dtype)
        if base.logit_scale is not None:  # scaled cosine attention
            attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-1, -2)
            attn = attn * torch.clamp(base.logit_scale, max=base.logit_scale_max).exp()
            if mask is not None:
                attn = attn + mask
            out = base.attn_drop(attn.softmax(dim=-1)) @ v
        else:
            q, k = base.ln_q(q), base.ln_k(k)
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=base.attn_drop.p if self.training else 0.0
            )
        if base.head_scale is not None:
            out = out * base.head_scale
        out = base.ln_inner(out.transpose(1, 2).reshape(n, length, dim))
        return base.out_drop(self._out(out, dropout))


# -- placing, saving, merging --------------------------------------------------------------------------------


def _towers(model: nn.Module, encoder: str) -> list[tuple[str, nn.Module]]:
    """(name, transformer) of the encoders that get adapters."""
    from open_clip.transformer import TextTransformer, VisionTransformer

    out = []
    if encoder in ("both", "text"):
        text = getattr(model, "text", None)
        if isinstance(text, TextTransformer):
            out.append(("text", text.transformer))
        elif hasattr(model, "transformer") and hasattr(model.transformer, "resblocks"):
            out.append(("text", model.transformer))
        else:
            raise OodbenchError(
                "LoRA on the text encoder needs an open_clip text transformer (CLIP or CustomTextCLIP with "
                "TextTransformer); this model's text tower is not one. Use encoder='vision'."
            )
    if encoder in ("both", "vision"):
        visual = getattr(model, "visual", None)
        if not isinstance(visual, VisionTransformer):
            raise OodbenchError(
                f"LoRA on the image encoder needs a ViT (open_clip VisionTransformer), not "
                f"{type(visual).__name__}; CLIP-LoRA is defined for ViT backbones only."
            )
        out.append(("vision", visual.transformer))
    return out


def block_indices(position: str, n_blocks: int) -> tuple[int, ...]:
    """The block indices CLIP-LoRA's `position` names for an encoder with `n_blocks` blocks."""
    if position == "all":
        return tuple(range(n_blocks))
    if position == "half-up":
        return tuple(range(n_blocks // 2, n_blocks))
    if position == "half-bottom":
        return tuple(range(n_blocks // 2))
    if position in POSITIONS_12:
        if n_blocks != 12:
            raise OodbenchError(
                f"LoRA position {position!r} is defined (by CLIP-LoRA) for 12-block encoders only; this one "
                f"has {n_blocks}. Use 'all', 'half-up' or 'half-bottom'."
            )
        return POSITIONS_12[position]
    raise OodbenchError(
        f"Unknown LoRA position {position!r}; use one of {['all', 'half-up', 'half-bottom', *POSITIONS_12]}."
    )


def apply_lora(model: nn.Module, *, spec: LoraSpec, generator: torch.Generator) -> list[LoraAttention]:
    """Wrap the attention of the chosen blocks of `model` (in place) and freeze everything but the adapters.
    A is drawn from `generator` in a fixed order (encoders, then blocks, then q/k/v/o); the dropout
    generator is seeded from it as well. Returns the wrappers in that order."""
    spec.validate()
    if lora_modules(model):
        raise OodbenchError("This model already carries LoRA adapters; merge or reload it before applying again.")
    rng = DropoutRng(int(torch.randint(0, 2**62, (1,), generator=generator)))
    model.requires_grad_(False)
    wrapped = []
    for _, transformer in _towers(model, spec.encoder):
        blocks = transformer.resblocks
        for i in block_indices(spec.position, len(blocks)):
            wrapper = LoraAttention(blocks[i].attn, spec=spec, generator=generator, rng=rng)
            wrapper.base.requires_grad_(False)
            wrapper.train(blocks[i].attn.training)  # a new module starts in training mode; keep the model's
            blocks[i].attn = wrapper
            wrapped.append(wrapper)
    return wrapped


def lora_modules(model: nn.Module) -> dict[str, LoraAttention]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoraAttention)}


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for m in lora_modules(model).values() for n, p in m.named_parameters() if n.startswith("lora_")]


def lora_rng(model: nn.Module) -> DropoutRng | None:
    mods = list(lora_modules(model).values())
    return mods[0].rng if mods else None


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapters alone, as a flat {name: contiguous CPU tensor} dict (safetensors can write it)."""
    return {
        f"{path}.{n}": p.detach().to("cpu").contiguous()
        for path, m in lora_modules(model).items()
        for n, p in m.named_parameters()
        if n.startswith("lora_")
    }


def load_lora_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy adapter values into a model that `apply_lora` prepared with the same spec. The key sets must match
    exactly and every shape too; anything else is an error naming the difference."""
    own = {
        f"{path}.{n}": p
        for path, m in lora_modules(model).items()
        for n, p in m.named_parameters()
        if n.startswith("lora_")
    }
    if not own:
        raise OodbenchError("The model has no LoRA adapters; call apply_lora with the entry's LoraSpec first.")
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise OodbenchError(
            f"The LoRA weights do not fit this model: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}). Check the backbone and the LoraSpec "
            f"(rank, params, encoder, position) the weights were trained with."
        )
    for k, p in own.items():
        if tuple(state[k].shape) != tuple(p.shape):
            raise OodbenchError(
                f"LoRA weight {k!r} has shape {tuple(state[k].shape)}, the model expects {tuple(p.shape)}; "
                f"the rank or the backbone differs from the one the weights were trained with."
            )
    with torch.no_grad():
        for k, p in own.items():
            p.copy_(state[k].to(device=p.device, dtype=p.dtype))


def merge_lora(model: nn.Module) -> nn.Module:
    """Add every adapter's update into the plain weights and put the original modules back (in place). The
    result is an ordinary open_clip model with the original parameter names."""
    mods = lora_modules(model)
    for path, wrapper in mods.items():
        with torch.no_grad():
            merged = {k: v.detach() for k, v in wrapper.merged_weights().items()}
            base = wrapper.base
            if "in_proj_weight" in merged:
                base.in_proj_weight.copy_(merged["in_proj_weight"])
            if "out_proj.weight" in merged:
                base.out_proj.weight.copy_(merged["out_proj.weight"])
        parent_path, _, attr = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        base.train(wrapper.training)
        setattr(parent, attr, base)
    return model


def count_parameters(params: Iterable[nn.Parameter]) -> int:
    return sum(p.numel() for p in params)
