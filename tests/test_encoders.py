"""Feature kinds: patch tokens in the joint space (GL-MCM/LoCoOp's value path) and cached augmented views cut
from the raw image as the reference code's training transforms cut them."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import sys
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from benchmark.data import LoadedDataset
from benchmark.datasets import DATASETS, load_families
from benchmark.encoders import encode_local, image_seed, view_kind, view_transform
from benchmark.errors import OodbenchError
from benchmark.features import extract_features

sys.path.insert(0, str(Path(__file__).parent))
from test_method_contract import BACKBONE, DIM  # the tiny random open_clip model

load_families()
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


# ---- augmented views ---------------------------------------------------------------------------------


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def banded(width: int = 40, height: int = 20, shift: int = 0) -> np.ndarray:
    """An RGB image with a red band at the left, a blue band at the right and grey between: a centre crop of
    the model's input size never shows red or blue; crops of the raw image do."""
    img = np.full((height, width, 3), 128, np.uint8)
    img[:, : width // 4] = (255, 0, 0)
    img[:, -width // 4 :] = (0, 0, 255)
    img[0, 0, 1] = shift  # a different image
    return img


def synthetic_dataset(images: list[np.ndarray], name: str = "synthetic") -> LoadedDataset:
    spec = dataclasses.replace(DATASETS.get("fmnist-id6-pool"), name=name, num_images=len(images))
    return LoadedDataset(
        spec=spec,
        labels=np.zeros(len(images), np.int64),
        list_sha256=hashlib.sha256(b"".join(_png(i) for i in images)).hexdigest(),
        _bytes=[_png(i) for i in images],
        _names=[f"img{i}" for i in range(len(images))],
    )


BACKBONE_WITH_PREPROCESS = dataclasses.replace(
    BACKBONE, preprocess=open_clip.image_transform(14, is_train=False, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
)


def denormalise(views: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor((0.5, 0.4, 0.3)).view(3, 1, 1)
    std = torch.tensor((0.2, 0.25, 0.3)).view(3, 1, 1)
    return views * std + mean


def test_view_transform_takes_the_backbone_input_size_and_normalisation():
    vt = view_transform(BACKBONE_WITH_PREPROCESS, views=4, scale=(0.08, 1.0))
    assert vt.size == (14, 14) and vt.mean == (0.5, 0.4, 0.3) and vt.std == (0.2, 0.25, 0.3)
    assert vt.ratio == (3 / 4, 4 / 3) and vt.scale == (0.08, 1.0)
    views = vt(Image.fromarray(banded()))
    assert views.shape == (4, 3, 14, 14) and views.dtype == torch.float32


def test_views_are_cut_from_the_raw_image_not_the_centre_crop():
    """The eval transform's centre crop of the banded image is all grey; Dassl's crops of the raw image, at
    scale (0.08, 1), show the red and blue bands in some views (and never invent other colours)."""
    raw = Image.fromarray(banded())
    centre = BACKBONE_WITH_PREPROCESS.preprocess(raw)
    assert denormalise(centre)[0].max() < 0.6  # no red in the centre crop
    vt = view_transform(BACKBONE_WITH_PREPROCESS, views=32, scale=(0.08, 1.0))
    views = denormalise(vt(raw))
    red = (views[:, 0] > 0.9) & (views[:, 2] < 0.1)
    blue = (views[:, 2] > 0.9) & (views[:, 0] < 0.1)
    assert red.flatten(1).any(1).sum() >= 3 and blue.flatten(1).any(1).sum() >= 3


def test_views_follow_torchvision_random_resized_crop_and_flip_seeded_by_the_image():
    """Each view is torchvision's RandomResizedCrop(size, scale, (3/4, 4/3), bicubic), then a flip with p 1/2,
    then the normalisation, drawn from torch's generator seeded by the image's pixels; the global generator is
    left as it was."""
    from torchvision import transforms as T

    raw = Image.fromarray(banded())
    vt = view_transform(BACKBONE_WITH_PREPROCESS, views=5, scale=(0.5, 1.0))
    state = torch.random.get_rng_state()
    views = vt(raw)
    assert torch.equal(torch.random.get_rng_state(), state)
    steps = T.Compose(
        [
            T.RandomResizedCrop(14, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3), interpolation=T.InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(0.5),
            T.ToTensor(),
            T.Normalize((0.5, 0.4, 0.3), (0.2, 0.25, 0.3)),
        ]
    )
    torch.manual_seed(image_seed(raw))
    expected = torch.stack([steps(raw) for _ in range(5)])
    assert torch.equal(views, expected)
    assert not torch.equal(views[0], views[1])
    other = vt(Image.fromarray(banded(shift=1)))  # another image: other crops
    assert not torch.equal(views, other)


def test_view_kinds_carry_count_and_crop_scale_in_their_names():
    assert view_kind(10) == "views10-s0.08-1"  # Dassl's scale by default
    assert view_kind(10, (0.5, 1.0)) == "views10-s0.5-1"
    assert view_kind(10, (0.5, 1.0), local=True) == "local-views10-s0.5-1"
    assert len({view_kind(3, s, local=loc) for s in ((0.08, 1.0), (0.5, 1.0)) for loc in (False, True)}) == 4


def test_view_features_are_cached_per_image_with_their_patch_tokens(tmp_path):
    """Extracted through the feature cache: [N, V, D] global and [N, V, P, D] patch tokens of the same views,
    the same for an image wherever it stands in the dataset, and apart for each crop scale."""
    images = [banded(shift=k) for k in range(3)]
    data = synthetic_dataset(images)
    kind, local_kind = view_kind(4, (0.08, 1.0)), view_kind(4, (0.08, 1.0), local=True)
    glob = extract_features(BACKBONE_WITH_PREPROCESS, data, cache_dir=tmp_path, kind=kind, batch_size=2).array
    loc = extract_features(BACKBONE_WITH_PREPROCESS, data, cache_dir=tmp_path, kind=local_kind, batch_size=2).array
    assert glob.shape == (3, 4, DIM) and loc.shape == (3, 4, 4, DIM)
    vt = view_transform(BACKBONE_WITH_PREPROCESS, views=4, scale=(0.08, 1.0))
    with torch.no_grad():
        views = vt(data.get_image(1))
        np.testing.assert_allclose(glob[1], BACKBONE.model.encode_image(views).numpy(), atol=2e-3, rtol=2e-3)
        np.testing.assert_allclose(loc[1], encode_local(BACKBONE, views).numpy(), atol=2e-3, rtol=2e-3)
    reordered = synthetic_dataset(images[::-1], name="synthetic-reversed")
    again = extract_features(BACKBONE_WITH_PREPROCESS, reordered, cache_dir=tmp_path, kind=kind, batch_size=3)
    np.testing.assert_array_equal(again.array[2], glob[0])
    other = extract_features(
        BACKBONE_WITH_PREPROCESS, data, cache_dir=tmp_path, kind=view_kind(4, (0.5, 1.0)), batch_size=2
    )
    assert not other.cache_hit and not np.array_equal(other.array, glob)
    assert extract_features(BACKBONE_WITH_PREPROCESS, data, cache_dir=tmp_path, kind=kind).cache_hit


@pytest.mark.parametrize("bad", [0, -1, 65, True, 2.5])
def test_bad_view_counts_are_clear_errors(bad):
    with pytest.raises(OodbenchError, match="views"):
        view_kind(bad)


@pytest.mark.parametrize("bad", [(0.0, 1.0), (0.6, 0.5), (0.5, 1.5), (0.5,), "big"])
def test_bad_crop_scales_are_clear_errors(bad):
    with pytest.raises(OodbenchError, match="crop_scale"):
        view_kind(2, bad)
