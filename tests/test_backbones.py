"""Backbone names: bundled, local weights files, open_clip tags; clear errors for each mistake."""

from __future__ import annotations

import pytest
import torch

from benchmark.backbones import DEMO_BACKBONE, list_backbones, load_backbone, resolve_weights
from benchmark.errors import OodbenchError, UnknownNameError


def test_demo_backbone_loads_frozen_with_its_hash():
    bb = load_backbone(DEMO_BACKBONE)
    assert bb.arch == "oodbench-tiny-fmnist"
    assert len(bb.weights_sha256) == 64
    assert not any(p.requires_grad for p in bb.model.parameters())
    emb = bb.encode_text(["a photo of a Bag.", "a photo of a Dress."])
    assert emb.shape == (2, 64)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert DEMO_BACKBONE in list_backbones()
    assert "ViT-B-16:openai" in list_backbones()


def test_local_pt_weights_load_through_the_same_path(tmp_path):
    import open_clip

    resolve_weights(DEMO_BACKBONE)  # registers the bundled config
    model = open_clip.create_model("oodbench-tiny-fmnist", pretrained=None)
    path = tmp_path / "random.pt"
    torch.save(model.state_dict(), path)
    bb = load_backbone(f"oodbench-tiny-fmnist:{path}")
    assert torch.equal(bb.model.visual.proj, model.visual.proj)
    assert bb.weights_sha256 != load_backbone(DEMO_BACKBONE).weights_sha256


def test_weights_of_the_wrong_architecture_are_a_clear_error(tmp_path):
    import open_clip

    model = open_clip.create_model("RN50", pretrained=None)
    path = tmp_path / "rn50.pt"
    torch.save({k: v for k, v in list(model.state_dict().items())[:3]}, path)
    with pytest.raises(OodbenchError, match="do not fit architecture oodbench-tiny-fmnist"):
        load_backbone(f"oodbench-tiny-fmnist:{path}")


@pytest.mark.parametrize(
    "name, pattern",
    [
        ("ViT-B-61:openai", r"Unknown backbone architecture 'ViT-B-61'.*Did you mean 'ViT-B-16'"),
        ("ViT-B-16:opneai", r"Unknown pretrained tag 'opneai' for ViT-B-16.*'openai'"),
        ("ViT-B-16", r"not of the form ARCH:TAG"),
        ("ViT-B-16:/no/such/weights.safetensors", r"does not exist"),
    ],
)
def test_bad_names(name, pattern):
    with pytest.raises(OodbenchError, match=pattern):
        resolve_weights(name)


def test_unknown_names_are_unknown_name_errors():
    with pytest.raises(UnknownNameError):
        resolve_weights("ViT-B-61:openai")


def test_hub_tag_without_network_names_the_tag_and_the_local_file_route(monkeypatch):
    import open_clip.pretrained

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to the hub")

    monkeypatch.setattr(open_clip.pretrained, "download_pretrained", offline)
    with pytest.raises(OodbenchError) as info:
        resolve_weights("ViT-B-16:openai")
    msg = str(info.value)
    assert "'ViT-B-16:openai'" in msg and "ViT-B-16:/path/to/weights.safetensors" in msg
