"""OOD sets for ImageNet-scale ID sets: far (iNaturalist, SUN, Places, Textures, OpenImage-O) and near
(SSB-hard, NINCO, ImageNet-O; ImageNet-10 vs -20 reuses the specs in imagenet.py).

None of these can be downloaded or inspected on the machines oodbench is built on, so every spec is
pinned locally by `oodbench data prepare` (list_sha256 = ""), and every image under the prepared
folder counts (layout "images"). Counts marked "not asserted" are left to the pin; URLs are the ones
the sets' authors document, quoted from memory of their READMEs and not re-checked from here.
"""

from __future__ import annotations

from benchmark.datasets import UNKNOWN_COUNT, DatasetSpec, ImageListSource, register_dataset

_MOS = "Huang, Li. MOS: Towards Scaling Out-of-distribution Detection for Large Semantic Space. CVPR 2021."
_MOS_URL = (
    "The MOS authors' curated subsets (concepts disjoint from ImageNet-1k) are linked from the README of "
    "github.com/deeplearning-wisc/large_scale_ood ({file}). Unpack it and run "
    "`oodbench data prepare {name} --from /path/to/{folder}`."
)


def _ood(
    name: str, root: str, num_images: int, instructions: str, *, license: str, citation: str, description: str
) -> None:
    register_dataset(
        DatasetSpec(
            name=name,
            version=1,
            source=ImageListSource(list_file=f"{name}.tsv", root=root, layout="images", instructions=instructions),
            num_images=num_images,
            list_sha256="",
            license=license,
            citation=citation,
            description=description,
        )
    )


# far OOD: the 10,000-image subsets of MOS that MCM evaluates on, and Textures
for _name, _folder, _what in (
    ("inaturalist", "iNaturalist", "iNaturalist plant images (110 plant concepts)"),
    ("sun", "SUN", "SUN scene images (50 concepts)"),
    ("places", "Places", "Places365 scene images (50 concepts)"),
):
    _ood(
        f"{_name}-ood",
        f"ood/{_folder}",
        10_000,
        _MOS_URL.format(file=f"{_folder}.tar.gz", name=f"{_name}-ood", folder=_folder),
        license="research use; see the original dataset's terms",
        citation=_MOS,
        description=f"Far OOD: {_what} not in ImageNet-1k, the MOS/MCM subset.",
    )

_ood(
    "textures-ood",
    "ood/dtd/images",
    5_640,
    "Get DTD (dtd-r1.0.1.tar.gz) from https://www.robots.ox.ac.uk/~vgg/data/dtd/ and run "
    "`oodbench data prepare textures-ood --from /path/to/dtd/images` (47 folders of 120 images).",
    license="research use (DTD terms)",
    citation="Cimpoi et al. Describing Textures in the Wild. CVPR 2014.",
    description="Far OOD: the whole Describable Textures Dataset, 47 categories x 120 images.",
)

# count: the ViM paper reports 17,632 images; OpenOOD v1.5 uses a de-duplicated 15,869. Not asserted.
_ood(
    "openimage-o",
    "ood/openimage_o",
    UNKNOWN_COUNT,
    "Download the images listed by the ViM authors (github.com/haoqiwang/vim, OpenImage-O list over the Open Images "
    "test set) into one folder and run `oodbench data prepare openimage-o --from /path/to/openimage_o`.",
    license="CC BY 2.0 (Open Images images; check each image's licence)",
    citation="Wang et al. ViM: Out-Of-Distribution with Virtual-logit Matching. CVPR 2022.",
    description="Far OOD: Open Images test images selected to hold no ImageNet-1k class.",
)

# near OOD
# count: OpenOOD v1.5 lists SSB-hard with 49,000 images (from ImageNet-21K-P); not re-checked, not asserted.
_ood(
    "ssb-hard",
    "ood/ssb_hard",
    UNKNOWN_COUNT,
    "Build SSB-hard from ImageNet-21K-P with the class and image lists of github.com/sgvaze/SSB (or use OpenOOD "
    "v1.5's copy), then run `oodbench data prepare ssb-hard --from /path/to/ssb_hard`.",
    license="ImageNet terms (non-commercial research)",
    citation="Vaze et al. Open-Set Recognition: a Good Closed-Set Classifier is All You Need? ICLR 2022.",
    description="Near OOD: ImageNet-21K classes semantically closest to ImageNet-1k (Semantic Shift "
    "Benchmark, hard split).",
)
# count: the NINCO paper reports 5,879 images in 64 classes for the main set; recalled, not asserted.
_ood(
    "ninco",
    "ood/NINCO/NINCO_OOD_classes",
    UNKNOWN_COUNT,
    "Get NINCO (NINCO_all.tar.gz) from the link in github.com/j-cb/NINCO, unpack it and run "
    "`oodbench data prepare ninco --from /path/to/NINCO/NINCO_OOD_classes` (the main set, not the unit tests).",
    license="see the NINCO repository (images from several sources)",
    citation="Bitterwolf et al. In or Out? Fixing ImageNet Out-of-Distribution Detection Evaluation. ICML 2023.",
    description="Near OOD: images checked by hand to contain no ImageNet-1k class.",
)
_ood(
    "imagenet-o",
    "ood/imagenet-o",
    2_000,
    "Get imagenet-o.tar from github.com/hendrycks/natural-adv-examples and run "
    "`oodbench data prepare imagenet-o --from /path/to/imagenet-o` (200 wnid folders, 2,000 images).",
    license="research use (ImageNet-21K images)",
    citation="Hendrycks et al. Natural Adversarial Examples. CVPR 2021.",
    description="Near OOD: adversarially filtered ImageNet-21K images from classes outside ImageNet-1k.",
)
