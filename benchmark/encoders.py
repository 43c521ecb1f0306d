"""Feature kinds: how a batch of preprocessed images becomes cached features.

`global` is the image embedding every method uses. Other kinds (patch tokens for GL-MCM and
LoCoOp, augmented views for methods whose papers train on augmentations) register here and are
extracted and cached only for the methods and scores that ask for them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from benchmark.backbones import Backbone
from benchmark.registry import Registry

# A feature kind turns a batch of preprocessed images [B, 3, H, W] into an array [B, ...].
FeatureEncoder = Callable[[Backbone, torch.Tensor], torch.Tensor]
FEATURE_KINDS: Registry[FeatureEncoder] = Registry("feature kind")


@FEATURE_KINDS.register("global")
def encode_global(backbone: Backbone, images: torch.Tensor) -> torch.Tensor:
    """The image embedding in the joint space, before L2 normalisation [B, D]."""
    return backbone.model.encode_image(images)
