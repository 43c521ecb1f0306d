"""Feature kinds: patch tokens in the joint space (GL-MCM/LoCoOp's value path) and cached augmented views."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from benchmark.encoders import FEATURE_KINDS, augment_views, encode_local, view_kind
from benchmark.errors import OodbenchError

sys.path.insert(0, str(Path(__file__).parent))
from test_method_contract import BACKBONE, DIM  # the tiny random open_clip model

IMAGES = torch.randn(3, 3, 14, 14, generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def test_local_tokens_are_the_last_block_applied_to_each_token_alone():
    """The value path equals attention of a token to itself only: run the last block on a one-token
    sequence per patch and project it as the class token is projected."""
    visual = BACKBONE.model.visual
    local = encode_local(BACKBONE, IMAGES)
    assert local.shape == (3, 4, DIM)  # (14 / 7)^2 patches
    x = visual._embeds(IMAGES)
    for block in visual.transformer.resblocks[:-1]:
        x = block(x)
    last = visual.transformer.resblocks[-1]
    for p in range(4):
        alone = last(x[:, 1 + p : 2 + p])  # [B, 1, W]: softmax over one key is 1
        torch.testing.assert_close(local[:, p], visual.ln_post(alone[:, 0]) @ visual.proj, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_local_tokens_differ_from_plain_last_layer_tokens():
    visual = BACKBONE.model.visual
    plain = visual.ln_post(visual.transformer(visual._embeds(IMAGES))[:, 1:]) @ visual.proj
    assert not torch.allclose(encode_local(BACKBONE, IMAGES), plain)


def test_views_are_deterministic_per_image_and_independent_of_the_batch():
    kind = view_kind(3)
    assert kind == "views3" and view_kind(3) == kind and kind in FEATURE_KINDS
    enc = FEATURE_KINDS.get(kind)
    with torch.no_grad():
        both = enc(BACKBONE, IMAGES)
        alone = enc(BACKBONE, IMAGES[2:3])
    assert both.shape == (3, 3, DIM)
    torch.testing.assert_close(both[2], alone[0])
    assert not torch.allclose(both[0, 0], both[0, 1])  # views differ from each other


def test_augmented_views_are_crops_and_flips_of_the_image():
    img = torch.arange(2 * 8 * 8, dtype=torch.float32).reshape(2, 8, 8)
    views = augment_views(img, 16, seed=0)
    assert views.shape == (16, 2, 8, 8)
    assert torch.equal(views, augment_views(img, 16, seed=0))
    assert not torch.equal(views, augment_views(img, 16, seed=1))
    assert views.min() >= img.min() - 1e-3 * img.max() - 2 and views.max() <= img.max() + 2  # no invented content


@pytest.mark.parametrize("bad", [0, -1, 65, True, 2.5])
def test_bad_view_counts_are_clear_errors(bad):
    with pytest.raises(OodbenchError, match="views"):
        view_kind(bad)
