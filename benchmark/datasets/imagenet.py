"""ImageNet-1k and its class subsets ImageNet-10, -20 and -100 (MCM's ID sets).

All read a local ImageNet copy laid out one folder per wnid (`val/<wnid>/*.JPEG`, as torchvision's
ImageFolder and the MCM code expect; the official flat val folder is sorted into wnid folders with
the ground-truth file first). ImageNet cannot be redistributed, so no image list ships: each spec is
pinned locally by `oodbench data prepare` (list_sha256 = ""), see docs/data.md. A subset spec reads
the same folders as ImageNet-1k and keeps the wnids of its class list, labelled in list order.

Class names: imagenet1k.txt holds the 1000 CLIP class names (open_clip's IMAGENET_CLASSNAMES, the
names of the CLIP paper's notebook that MCM uses), aligned with imagenet1k.wnids (timm's sorted
ImageNet synset list, i.e. the standard class index). The ImageNet-10/-20/-100 wnids and names are MCM's
(warplane, sailboat, ...; ImageNet-100's from its class index with `_` read as a space); see docs/fidelity.md.
"""

from __future__ import annotations

from benchmark.datasets import UNKNOWN_COUNT, DatasetSpec, ImageListSource, register_dataset

_CITE = "Deng et al. ImageNet: A large-scale hierarchical image database. CVPR 2009."
_MCM = "Ming et al. Delving into Out-of-Distribution Detection with Vision-Language Representations. NeurIPS 2022."
_GET = (
    "Get ILSVRC2012 ({split}) from https://image-net.org (an account and acceptance of its terms are needed), "
    "sort it into one folder per wnid ({split}/<wnid>/*.JPEG; for val, use the ground-truth labels of the devkit), "
    "then run `oodbench data prepare {name} --from /path/to/{split}`."
)
_LICENSE = "ImageNet terms (non-commercial research)"


def _imagenet(name: str, split: str, classes: str, num_images: int, description: str, citation: str = _CITE) -> None:
    register_dataset(
        DatasetSpec(
            name=name,
            version=1,
            source=ImageListSource(
                list_file=f"{name}.tsv",
                root=f"imagenet/{split}",
                layout="imagenet",
                instructions=_GET.format(split=split, name=name),
            ),
            num_images=num_images,
            list_sha256="",
            classnames=classes,
            license=_LICENSE,
            citation=citation,
            description=description,
        )
    )


_imagenet(
    "imagenet1k-val", "val", "imagenet1k.txt", 50_000, "ImageNet-1k validation set, the ID test split (50 per class)."
)
_imagenet("imagenet1k-train", "train", "imagenet1k.txt", 1_281_167, "ImageNet-1k training set, the few-shot pool.")
_imagenet(
    "imagenet10-val",
    "val",
    "imagenet10.txt",
    500,
    "ImageNet-10 (MCM): 10 CIFAR-10-like ImageNet classes, val images.",
    _MCM,
)
# count: 10 classes x ~1300 train images; not every ImageNet class has exactly 1300, so not asserted.
_imagenet(
    "imagenet10-train",
    "train",
    "imagenet10.txt",
    UNKNOWN_COUNT,
    "ImageNet-10 training images, the few-shot pool.",
    _MCM,
)
_imagenet(
    "imagenet20-val",
    "val",
    "imagenet20.txt",
    1_000,
    "ImageNet-20 (MCM): 20 classes semantically close to ImageNet-10, val images.",
    _MCM,
)
_imagenet(
    "imagenet20-train",
    "train",
    "imagenet20.txt",
    UNKNOWN_COUNT,
    "ImageNet-20 training images, the few-shot pool.",
    _MCM,
)
# ImageNet-100's class list ships as imagenet100.wnids (MCM's data/ImageNet100/class_list.txt, in its order).
_imagenet(
    "imagenet100-val", "val", "imagenet100.txt", 5_000, "ImageNet-100 (MCM): 100 ImageNet classes, val images.", _MCM
)
_imagenet(
    "imagenet100-train",
    "train",
    "imagenet100.txt",
    UNKNOWN_COUNT,
    "ImageNet-100 training images, the few-shot pool.",
    _MCM,
)
