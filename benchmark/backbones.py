"""Backbones: open_clip models named `ARCH:TAG` (a pretrained tag) or `ARCH:/path/to/weights`.

The bundled demo backbone `oodbench-tiny-fmnist:demo` is an open_clip model config registered
with open_clip plus committed safetensors weights; it loads through the same path as any other.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmark.atomic import write_json_atomic
from benchmark.backbone_names import ASSETS_DIR, BUNDLED_WEIGHTS, DEMO_BACKBONE, list_backbones  # noqa: F401
from benchmark.errors import OodbenchError, UnknownNameError
from benchmark.hashing import sha256_file
from benchmark.registry import suggest

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


@dataclass(frozen=True)
class BackboneIdentity:
    """What identifies a backbone in cache keys and result rows, without the model itself."""

    name: str
    arch: str
    weights_sha256: str
    preprocess_id: str


@dataclass
class Backbone:
    """A loaded, frozen open_clip model and what identifies it in caches and rows."""

    name: str
    arch: str
    model: Any  # open_clip.CLIP
    preprocess: Any  # the eval image transform
    tokenizer: Any
    weights_sha256: str
    device: torch.device
    weights_path: Path | None = None

    @property
    def preprocess_id(self) -> str:
        """A stable description of the image transform, part of every feature cache key."""
        return " ".join(repr(self.preprocess).split())

    @property
    def identity(self) -> BackboneIdentity:
        return BackboneIdentity(self.name, self.arch, self.weights_sha256, self.preprocess_id)

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.exp().item())

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """L2-normalised text embeddings [len(prompts), D] (float32)."""
        tokens = self.tokenizer(prompts).to(self.device)
        return torch.nn.functional.normalize(self.model.encode_text(tokens).float(), dim=-1)


def _register_bundled_configs() -> None:
    import open_clip

    for cfg in ASSETS_DIR.glob("*/*.json"):
        if cfg.stem not in open_clip.list_models():
            open_clip.add_model_config(cfg)


def file_sha256(path: Path) -> str:
    """sha256 of a weights file, remembered in a sidecar keyed by size and mtime (weights are large)."""
    stat = path.stat()
    sidecar = path.with_name(path.name + ".sha256.json")
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        cached = json.loads(sidecar.read_text())
        if cached.get("stamp") == stamp:
            return str(cached["sha256"])
    except (OSError, ValueError, KeyError):
        pass
    digest = sha256_file(path)
    try:
        write_json_atomic(sidecar, {"stamp": stamp, "sha256": digest})
    except OSError:
        pass  # a read-only location just means hashing again next time
    return digest


def _stamp(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _identity_file(name: str, cache_dir: Path) -> Path:
    return Path(cache_dir) / "backbones" / f"{hashlib.sha256(name.encode()).hexdigest()[:24]}.json"


def remember_identity(backbone: Backbone, *, cache_dir: Path) -> None:
    """Record a loaded backbone's identity so that later fully cached runs need not load the model."""
    if backbone.weights_path is None:
        return
    record = {
        **backbone.identity.__dict__,
        "weights_path": str(backbone.weights_path),
        "stamp": _stamp(backbone.weights_path),
    }
    path = _identity_file(backbone.name, cache_dir)
    try:
        write_json_atomic(path, record)
    except OSError:
        pass  # an unwritable cache only means loading the model next time


def remembered_identity(name: str, *, cache_dir: Path) -> BackboneIdentity | None:
    """The identity recorded when `name` was last loaded, if its weights file is unchanged since."""
    try:
        record = json.loads(_identity_file(name, cache_dir).read_text())
        if record["name"] != name or _stamp(Path(record["weights_path"])) != record["stamp"]:
            return None
        return BackboneIdentity(record["name"], record["arch"], record["weights_sha256"], record["preprocess_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def parse_backbone(name: str) -> tuple[str, str]:
    arch, sep, tag = name.partition(":")
    if not sep or not arch or not tag:
        raise OodbenchError(
            f"Backbone {name!r} is not of the form ARCH:TAG (for example 'ViT-B-16:openai') or "
            f"ARCH:/path/to/weights.safetensors. `oodbench list backbones` shows the known names."
        )
    return arch, tag


def _is_path(tag: str) -> bool:
    return "/" in tag or "\\" in tag or tag.endswith(WEIGHT_SUFFIXES)


def resolve_weights(name: str) -> tuple[str, Path]:
    """(arch, local weights file) for a backbone name, downloading a hub tag if needed."""
    import open_clip

    _register_bundled_configs()
    arch, tag = parse_backbone(name)
    if name in BUNDLED_WEIGHTS:
        path = BUNDLED_WEIGHTS[name]
        if not path.exists():
            raise OodbenchError(
                f"The bundled weights {path} are missing; reinstall oodbench or run "
                f"`python scripts/train_demo_backbone.py` to rebuild them."
            )
        return arch, path
    models = open_clip.list_models()
    if arch not in models:
        raise UnknownNameError(
            f"Unknown backbone architecture {arch!r}.{suggest(arch, models)} "
            f"`oodbench list backbones` shows the known names."
        )
    if _is_path(tag):
        path = Path(tag).expanduser()
        if not path.is_file():
            raise OodbenchError(f"Weights file {path} for backbone {name!r} does not exist.")
        return arch, path
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if tag not in tags:
        hint = suggest(tag, tags) or (
            f" Its tags are: {', '.join(tags)}." if tags else f" {arch} has no pretrained tags."
        )
        raise UnknownNameError(
            f"Unknown pretrained tag {tag!r} for {arch}.{hint} "
            f"Or pass local weights as {arch}:/path/to/weights.safetensors."
        )
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

    try:
        path = download_pretrained(get_pretrained_cfg(arch, tag))
    except Exception as err:
        path = ""
        reason = f"{type(err).__name__}: {err}"
    else:
        reason = "no file was returned"
    if not path:
        raise OodbenchError(
            f"Could not get the weights of {name!r} from the hub ({reason}). Hub weights are downloaded once "
            f"into the Hugging Face cache and need a network then. Without one, copy the weights file to this "
            f"machine and pass --backbone {arch}:/path/to/weights.safetensors (or .pt/.bin)."
        )
    return arch, Path(path)


def load_backbone(name: str, *, device: torch.device | str = "cpu") -> Backbone:
    """Load a backbone in eval mode with every parameter frozen."""
    import open_clip

    device = torch.device(device)
    arch, path = resolve_weights(name)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=str(path), device=device)
    except (RuntimeError, AssertionError, KeyError) as err:  # open_clip's shape checks raise these
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise OodbenchError(
            f"The weights {path} do not fit architecture {arch}: {first}. "
            f"Check the ARCH part of --backbone matches the checkpoint."
        ) from None
    except Exception as err:
        raise OodbenchError(
            f"Cannot load weights {path} for {arch}: {type(err).__name__}: {err}. "
            f"Pass safetensors, or a .pt state dict (loaded with weights_only=True)."
        ) from None
    model.eval().requires_grad_(False)
    return Backbone(
        name=name,
        arch=arch,
        model=model,
        preprocess=preprocess,
        tokenizer=open_clip.get_tokenizer(arch),
        weights_sha256=file_sha256(path),
        device=device,
        weights_path=path,
    )
