"""Feature kinds: how a batch of preprocessed images becomes cached features.

`global` is the image embedding every method uses. Other kinds register here and are extracted
and cached only for the methods and scores that ask for them:

- `local`: patch tokens in the joint space [B, P, D], for GL-MCM and LoCoOp.
- `local_width`: the same tokens before the projection [B, P, width], for GalLoP (extracted in place of
  `local` for methods that declare needs={"local_width"}).
- `views{V}` (`views8`, ...; see `view_kind`): V randomly augmented views of each image [B, V, D],
  for methods whose papers train on augmentations (Tip-Adapter caches 10 augmented epochs; CoOp
  and the adapters train with random resized crops and flips). Caching a fixed number of views
  replaces re-encoding images at every training step.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.backbones import Backbone
from benchmark.errors import OodbenchError
from benchmark.registry import Registry

# A feature kind turns a batch of preprocessed images [B, 3, H, W] into an array [B, ...].
FeatureEncoder = Callable[[Backbone, torch.Tensor], torch.Tensor]
FEATURE_KINDS: Registry[FeatureEncoder] = Registry("feature kind")

# Random resized crop as CLIP-era few-shot code uses it (Tip-Adapter, CoOp: scale (0.5, 1) of the
# area, aspect ratio (3/4, 4/3)), then a horizontal flip with probability 1/2.
CROP_SCALE = (0.5, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
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


def _crop_box(gen: torch.Generator, h: int, w: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random resized crop, torchvision's rule with a fallback."""
    area = h * w
    log_r = (math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]))
    for _ in range(10):
        u = torch.rand(3, generator=gen).tolist()
        target = area * (CROP_SCALE[0] + u[0] * (CROP_SCALE[1] - CROP_SCALE[0]))
        ratio = math.exp(log_r[0] + u[1] * (log_r[1] - log_r[0]))
        cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
            left = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
            return top, left, ch, cw
    return 0, 0, h, w


def augment_views(image: torch.Tensor, views: int, *, seed: int) -> torch.Tensor:
    """`views` random resized crops + flips of one preprocessed image [3, H, W] -> [V, 3, H, W].

    Cropping and flipping commute with the per-channel normalisation of the preprocessing, so
    augmenting the preprocessed tensor equals augmenting the image first."""
    gen = torch.Generator().manual_seed(seed)
    _, h, w = image.shape
    out = []
    for _ in range(views):
        top, left, ch, cw = _crop_box(gen, h, w)
        crop = image[None, :, top : top + ch, left : left + cw]
        view = F.interpolate(crop.float(), size=(h, w), mode="bicubic", align_corners=False)[0]
        if bool(torch.rand(1, generator=gen) < 0.5):
            view = view.flip(-1)
        out.append(view.to(image.dtype))
    return torch.stack(out)


def image_seed(image: torch.Tensor) -> int:
    """A seed from the image's content, so its views do not depend on batch size or order."""
    return zlib.crc32(np.ascontiguousarray(image.detach().float().cpu().numpy()).tobytes())


def _views_encoder(views: int) -> FeatureEncoder:
    def encode(backbone: Backbone, images: torch.Tensor) -> torch.Tensor:
        batch = torch.cat([augment_views(img, views, seed=image_seed(img)) for img in images])
        feats = backbone.model.encode_image(batch)
        return feats.reshape(len(images), views, -1)

    encode.__doc__ = f"{views} augmented views per image in the joint space [B, {views}, D]."
    return encode


def view_kind(views: int) -> str:
    """The feature kind of `views` cached augmented views per image, registered on first use."""
    if isinstance(views, bool) or not isinstance(views, int) or not 1 <= views <= MAX_VIEWS:
        raise OodbenchError(
            f"The number of augmented views must be an integer from 1 to {MAX_VIEWS} "
            f"(got {views!r}); set the method's `views` config key, 0 to train without views."
        )
    name = f"views{views}"
    if name not in FEATURE_KINDS:
        FEATURE_KINDS.add(name, _views_encoder(views))
    return name
