"""Feature kinds: how a batch of images becomes cached features.

`global` is the image embedding every method uses. Other kinds register here and are extracted
and cached only for the methods and scores that ask for them:

- `local`: patch tokens in the joint space [B, P, D], for GL-MCM and LoCoOp.
- `local_width`: the same tokens before the projection [B, P, width], for GalLoP (extracted in place of
  `local` for methods that declare needs={"local_width"}).
- `views{V}-s{lo}-{hi}` (see `view_kind`): V randomly augmented views of each image [B, V, D], for
  methods whose papers train on augmentations (Tip-Adapter caches 10 augmented epochs; CoOp and the
  adapters train with random resized crops and flips). `local-views{V}-s{lo}-{hi}`: the patch tokens
  of the same views [B, V, P, D] (LoCoOp). Caching a fixed number of views replaces re-encoding
  images at every training step (a recorded departure, docs/fidelity.md).

A view is cut from the decoded image itself, not from the centre-cropped model input, exactly as the
reference code's training transform does (Dassl's for the CoOp family, Tip-Adapter's): torchvision's
RandomResizedCrop to the model's input size with the method's crop scale (the area fraction; Dassl
(0.08, 1), Tip-Adapter (0.5, 1)), aspect ratio (3/4, 4/3), bicubic, then a horizontal flip with
probability 1/2, then the backbone's normalisation. Each image's views are seeded from its pixels, so
they do not depend on batch size, order or worker; the crop scale is part of the kind's name, so
views of different scales never share a cache entry.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.backbones import Backbone
from benchmark.errors import OodbenchError
from benchmark.registry import Registry

# A feature kind turns a batch of preprocessed images [B, 3, H, W] into an array [B, ...]. A kind with an
# `image_transform(backbone)` attribute reads decoded images through that transform instead (augmented views).
FeatureEncoder = Callable[[Backbone, torch.Tensor], torch.Tensor]
FEATURE_KINDS: Registry[FeatureEncoder] = Registry("feature kind")

CROP_RATIO = (3 / 4, 4 / 3)  # torchvision's RandomResizedCrop default; neither Dassl nor Tip-Adapter passes one
DASSL_CROP_SCALE = (0.08, 1.0)  # Dassl's INPUT.RRCROP_SCALE (KaiyangZhou/Dassl.pytorch dassl/config/defaults.py:L40)
MAX_VIEWS = 64


@FEATURE_KINDS.register("global")
def encode_global(backbone: Backbone, images: torch.Tensor) -> torch.Tensor:
    """The image embedding in the joint space, before L2 normalisation [B, D]."""
    return backbone.model.encode_image(images)


@FEATURE_KINDS.register("local")
def encode_local(backbone: Backbone, images: torch.Tensor) -> torch.Tensor:
    """Patch tokens projected into the joint space [B, P, D] (class token dropped).

    Follows GL-MCM (Miyai et al., 2023) and LoCoOp's reference code: the last transformer block
    is run a second time with its attention replaced by the value path (v_proj then out_proj, no
    mixing between tokens), keeping the block's residuals and MLP, then `ln_post` and `proj` as
    for the class token. Plain last-layer patch tokens match text far worse, since the last
    attention mixes every token into the class token's direction.
    """
    tokens = encode_local_width(backbone, images)
    proj = backbone.model.visual.proj
    return tokens @ proj if proj is not None else tokens


@FEATURE_KINDS.register("local_width")
def encode_local_width(backbone: Backbone, images: torch.Tensor) -> torch.Tensor:
    """The same patch tokens as `local`, before the projection into the joint space [B, P, width].

    GalLoP (Lafon et al., 2024) learns a linear map on these tokens and projects them itself."""
    visual = backbone.model.visual
    if not hasattr(visual, "transformer") or not hasattr(visual, "ln_post"):
        raise OodbenchError(
            f"Local (patch-token) features need a ViT image encoder; {backbone.arch} has "
            f"{type(visual).__name__}. Use scores without patch features (drop gl_mcm)."
        )
    if getattr(visual, "attn_pool", None) is not None:
        raise OodbenchError(
            f"{backbone.arch} pools with attention; its patch tokens are not in the joint space, "
            f"so local features (gl_mcm, locoop, gallop) are not available for it."
        )
    x = visual._embeds(images)
    blocks = visual.transformer.resblocks
    batch_first = getattr(visual.transformer, "batch_first", True)
    if not batch_first:
        x = x.transpose(0, 1)
    for block in blocks[:-1]:
        x = block(x)
    if not batch_first:
        x = x.transpose(0, 1)
    last = blocks[-1]
    attn = last.attn
    width = x.shape[-1]
    w_v = attn.in_proj_weight[2 * width :]
    b_v = attn.in_proj_bias[2 * width :] if attn.in_proj_bias is not None else None
    v = F.linear(last.ln_1(x), w_v, b_v)
    v = x + last.ls_1(attn.out_proj(v))
    v = v + last.ls_2(last.mlp(last.ln_2(v)))
    return visual.ln_post(v[:, 1:])


def image_seed(image: Any) -> int:
    """A seed from a decoded image's pixels and size, so its views do not depend on batch size, order or worker."""
    pixels = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
    return zlib.crc32(pixels.tobytes(), zlib.crc32(repr(pixels.shape).encode()))


@dataclass(frozen=True)
class ViewTransform:
    """Decoded image (PIL) -> `views` augmented, normalised model inputs [V, 3, H, W]: RandomResizedCrop(size,
    scale, ratio, bicubic), RandomHorizontalFlip(0.5), ToTensor, Normalize(mean, std), torchvision's own
    transforms as the reference code composes them, drawing from torch's generator seeded by the image."""

    views: int
    size: tuple[int, int]
    scale: tuple[float, float]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    ratio: tuple[float, float] = CROP_RATIO

    def compose(self) -> Any:
        from torchvision import transforms as T

        return T.Compose(
            [
                T.RandomResizedCrop(
                    self.size, scale=self.scale, ratio=self.ratio, interpolation=T.InterpolationMode.BICUBIC
                ),
                T.RandomHorizontalFlip(p=0.5),
                T.ToTensor(),
                T.Normalize(mean=self.mean, std=self.std),
            ]
        )

    def views_of(self, image: Any, *, seed: int) -> torch.Tensor:
        """`views` augmentations of the RGB PIL image `image`, drawn from a generator seeded with `seed`
        (torch's global generator is forked and left as it was)."""
        transform = self.compose()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return torch.stack([transform(image) for _ in range(self.views)])

    def __call__(self, image: Any) -> torch.Tensor:
        rgb = image.convert("RGB") if getattr(image, "mode", "RGB") != "RGB" else image
        return self.views_of(rgb, seed=image_seed(rgb))


def _steps(transform: Any) -> list[Any]:
    return list(getattr(transform, "transforms", None) or [])


def view_transform(backbone: Backbone, *, views: int, scale: tuple[float, float]) -> ViewTransform:
    """The ViewTransform of a backbone: its model input size (the eval transform's centre crop, else the
    model's configured size) and its normalisation (the eval transform's, else the model's configured one)."""
    from torchvision import transforms as T

    steps = _steps(backbone.preprocess)
    cfg = getattr(backbone.model.visual, "preprocess_cfg", None) or {}
    crops = [s.size for s in steps if isinstance(s, T.CenterCrop)]
    norms = [s for s in steps if isinstance(s, T.Normalize)]
    size = crops[0] if crops else cfg.get("size") or getattr(backbone.model.visual, "image_size", None)
    mean = norms[0].mean if norms else cfg.get("mean")
    std = norms[0].std if norms else cfg.get("std")
    if size is None or mean is None or std is None:
        raise OodbenchError(
            f"Cannot tell the input size and normalisation of {backbone.arch}'s image encoder (its eval transform "
            f"has no CenterCrop/Normalize and the model no preprocess_cfg), so augmented views cannot be made."
        )
    size = (int(size), int(size)) if isinstance(size, (int, float)) else tuple(int(v) for v in size)
    return ViewTransform(
        views=views,
        size=size,
        scale=(float(scale[0]), float(scale[1])),
        mean=tuple(float(m) for m in mean),
        std=tuple(float(v) for v in std),
    )


@dataclass(frozen=True)
class ViewEncoder:
    """A views feature kind: images arrive as [B, V, 3, H, W] from its `image_transform`; the encoder sees
    them as B * V images and returns [B, V, D] (global) or [B, V, P, D] (patch tokens)."""

    views: int
    scale: tuple[float, float]
    local: bool = False

    def image_transform(self, backbone: Backbone) -> ViewTransform:
        return view_transform(backbone, views=self.views, scale=self.scale)

    def __call__(self, backbone: Backbone, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 5 or images.shape[1] != self.views:
            raise OodbenchError(
                f"A views feature kind takes batches [B, {self.views}, 3, H, W] from its image transform, "
                f"got {tuple(images.shape)}."
            )
        flat = images.flatten(0, 1)
        feats = encode_local(backbone, flat) if self.local else backbone.model.encode_image(flat)
        return feats.reshape(len(images), self.views, *feats.shape[1:])


def view_kind(views: int, crop_scale: tuple[float, float] = DASSL_CROP_SCALE, *, local: bool = False) -> str:
    """The feature kind of `views` cached augmented views per image at `crop_scale` (global features, or with
    `local` their patch tokens), registered on first use: `views10-s0.08-1`, `local-views10-s0.08-1`."""
    if isinstance(views, bool) or not isinstance(views, int) or not 1 <= views <= MAX_VIEWS:
        raise OodbenchError(
            f"The number of augmented views must be an integer from 1 to {MAX_VIEWS} "
            f"(got {views!r}); set the method's `views` config key, 0 to train without views."
        )
    try:
        lo, hi = (float(v) for v in crop_scale)
    except (TypeError, ValueError):
        raise OodbenchError(f"crop_scale must be two numbers (low, high), got {crop_scale!r}.") from None
    if not 0 < lo <= hi <= 1:
        raise OodbenchError(
            f"crop_scale ({lo:g}, {hi:g}) must satisfy 0 < low <= high <= 1 (fractions of the image area); "
            f"set the method's `crop_scale` config key."
        )
    name = f"{'local-' if local else ''}views{views}-s{lo:g}-{hi:g}"
    if name not in FEATURE_KINDS:
        FEATURE_KINDS.add(name, ViewEncoder(views, (lo, hi), local))
    return name
