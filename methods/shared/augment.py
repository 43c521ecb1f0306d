"""Training-time image augmentations of the encoder-tuning methods, each as its authors' code builds it, and
a seeded way to apply one to a batch.

- "wise_ft": RandomResizedCrop(size, scale=(0.9, 1.0), bicubic), no flip: WiSE-FT's clip._transform(is_train)
  (mlfoundations/wise-ft clip/clip.py:L64-72), the same as open_clip's default training transform that
  FLYP's open_clip models use (AugmentationCfg.scale = (0.9, 1.0)). Used by full_ft, wise_ft and flyp.
- "clip_lora": RandomResizedCrop(size, scale=(0.08, 1), bicubic) + RandomHorizontalFlip(0.5)
  (MaxZanella/CLIP-LoRA main.py:L38-43).
- "lp_ft": torchvision's RandomResizedCrop(size) with its defaults (scale (0.08, 1), bilinear) +
  RandomHorizontalFlip() (AnanyaKumar/transfer_learning configs/adaptation/datasets_imagenet_augs.yaml:L12-15).
- "none": the resize/centre-crop of evaluation, for recipes without augmentation.
Every transform ends with the backbone's own normalisation (mean, std of its eval preprocess).

torchvision draws from torch's global generator; `augment_batch` seeds it from the run's generator inside
torch.random.fork_rng, so a batch's augmentation depends only on the run's seed and the global state is
left as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from benchmark.errors import OodbenchError

AUGMENTATIONS = ("wise_ft", "clip_lora", "lp_ft", "none")


class _ToRGB:
    def __call__(self, image):
        return image.convert("RGB") if getattr(image, "mode", "RGB") != "RGB" else image

    def __repr__(self) -> str:
        return "ToRGB()"


def train_transform(
    name: str, *, image_size: int, mean: Sequence[float], std: Sequence[float]
) -> Callable[[object], torch.Tensor]:
    """PIL image -> normalised [3, size, size] float tensor, with method `name`'s augmentation."""
    from torchvision import transforms as T

    bicubic = T.InterpolationMode.BICUBIC
    if name == "wise_ft":
        steps = [T.RandomResizedCrop(image_size, scale=(0.9, 1.0), interpolation=bicubic)]
    elif name == "clip_lora":
        steps = [T.RandomResizedCrop(image_size, scale=(0.08, 1.0), interpolation=bicubic), T.RandomHorizontalFlip(0.5)]
    elif name == "lp_ft":
        steps = [T.RandomResizedCrop(image_size), T.RandomHorizontalFlip()]
    elif name == "none":
        steps = [T.Resize(image_size, interpolation=bicubic), T.CenterCrop(image_size)]
    else:
        raise OodbenchError(f"Unknown augmentation {name!r}; use one of {AUGMENTATIONS}.")
    return T.Compose([_ToRGB(), *steps, T.ToTensor(), T.Normalize(mean=tuple(mean), std=tuple(std))])


def input_geometry(backbone) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """(input size, mean, std) of a backbone: read off its eval transform (CenterCrop and Normalize), else its
    open_clip model's `visual.preprocess_cfg` / `visual.image_size`."""
    size = mean = std = None
    for step in getattr(backbone.preprocess, "transforms", None) or []:
        name = type(step).__name__
        if name == "CenterCrop":
            size = int(step.size[0])
        elif name == "Normalize":
            mean, std = tuple(float(m) for m in step.mean), tuple(float(s) for s in step.std)
    visual = backbone.model.visual
    cfg = getattr(visual, "preprocess_cfg", None) or {}
    if size is None:
        image_size = cfg.get("size", getattr(visual, "image_size", None))
        size = int(image_size[0] if isinstance(image_size, (tuple, list)) else image_size)
    if mean is None:
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

        mean, std = tuple(cfg.get("mean", OPENAI_DATASET_MEAN)), tuple(cfg.get("std", OPENAI_DATASET_STD))
    return size, mean, std


def backbone_transform(name: str, backbone) -> Callable[[object], torch.Tensor]:
    """Method `name`'s training transform at the backbone's input size and normalisation."""
    size, mean, std = input_geometry(backbone)
    return train_transform(name, image_size=size, mean=mean, std=std)


def augment_batch(images: Sequence[object], transform: Callable, *, generator: torch.Generator) -> torch.Tensor:
    """Apply `transform` to each image, torch's global generator seeded from `generator` for this batch
    (and restored afterwards). Returns [N, 3, H, W]."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.stack([transform(im) for im in images])
