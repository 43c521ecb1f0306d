"""Fine-grained ID sets: CUB-200, Stanford Cars-196, Food-101, Oxford-IIIT Pets-37 (test split = ID
test, train split = few-shot pool), each read from the archive layout its authors distribute.

Pinned locally by `oodbench data prepare` (list_sha256 = ""), see docs/data.md. Food-101 and Pets
class names ship (they are the archives' folder and file-name stems; `prepare` checks them against
the copy). CUB and Cars names cannot be checked from here, so `prepare` reads them from the copy
(CUB's classes.txt, Cars' class folders) and writes them under the data root.
"""

from __future__ import annotations

from benchmark.datasets import DatasetSpec, ImageListSource, register_dataset


def _split_pair(
    stem: str,
    root: str,
    layout: str,
    classes: str,
    counts: dict[str, int],
    get: str,
    *,
    license: str,
    citation: str,
    what: str,
) -> None:
    for split, n in counts.items():
        name = f"{stem}-{split}"
        role = "the ID test split" if split == "test" else "the few-shot pool"
        register_dataset(
            DatasetSpec(
                name=name,
                version=1,
                source=ImageListSource(
                    list_file=f"{name}.tsv",
                    root=root.format(split=split),
                    layout=f"{layout}:{split}",
                    instructions=get.format(name=name, split=split),
                ),
                num_images=n,
                list_sha256="",
                classnames=classes,
                license=license,
                citation=citation,
                description=f"{what}, {split} split ({role}).",
            )
        )


_split_pair(
    "cub200",
    "cub/CUB_200_2011",
    "cub",
    "cub200.txt",
    {"test": 5_794, "train": 5_994},
    "Get CUB_200_2011.tgz from https://www.vision.caltech.edu/datasets/cub_200_2011/ , unpack it and run "
    "`oodbench data prepare {name} --from /path/to/CUB_200_2011` (the folder holding images/ and images.txt).",
    license="research use (Caltech-UCSD terms)",
    citation="Wah et al. The Caltech-UCSD Birds-200-2011 Dataset. Caltech, CNS-TR-2011-001.",
    what="Caltech-UCSD Birds, 200 species",
)
_split_pair(
    "stanford-cars",
    "stanford-cars/{split}",
    "class_folders",
    "stanford-cars196.txt",
    {"test": 8_041, "train": 8_144},
    "Stanford Cars' original site no longer serves the archive; use a copy sorted into one folder per class name "
    "({split}/<Make Model Year>/*.jpg, the common 'car_data' layout) and run "
    "`oodbench data prepare {name} --from /path/to/car_data/{split}`.",
    license="research use (Stanford Cars terms)",
    citation="Krause et al. 3D Object Representations for Fine-Grained Categorization. ICCV Workshops 2013.",
    what="Stanford Cars, 196 make-model-year classes",
)
_split_pair(
    "food101",
    "food-101",
    "food101",
    "food101.txt",
    {"test": 25_250, "train": 75_750},
    "Get food-101.tar.gz from https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/ , unpack it and run "
    "`oodbench data prepare {name} --from /path/to/food-101` (the folder holding images/ and meta/).",
    license="research use (Food-101 terms; images from foodspotting.com)",
    citation="Bossard et al. Food-101 - Mining Discriminative Components with Random Forests. ECCV 2014.",
    what="Food-101, 101 dishes",
)
_split_pair(
    "oxford-pets",
    "oxford-iiit-pet",
    "pets",
    "oxford-pets37.txt",
    {"test": 3_669, "trainval": 3_680},
    "Get images.tar.gz and annotations.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/pets/ , unpack both into "
    "one folder and run `oodbench data prepare {name} --from /path/to/oxford-iiit-pet` (holding images/ and "
    "annotations/).",
    license="CC BY-SA 4.0",
    citation="Parkhi et al. Cats and Dogs. CVPR 2012.",
    what="Oxford-IIIT Pets, 37 breeds",
)
