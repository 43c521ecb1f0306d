"""Miniature copies of every registered real dataset, written in the on-disk layout its authors publish.

Used by tests/test_rehearsal.py. Each copy holds a few tiny generated images per class (random colour
blocks, 12x16 or 16x12 pixels, so the backbone's preprocessing resizes and crops them) and the split
and class files of the real archive, so that `oodbench data prepare` reads it exactly as it would
read the real release:

- ImageNet (ILSVRC2012): `train/<wnid>/<wnid>_<n>.JPEG` and `val/<wnid>/ILSVRC2012_val_<8 digits>.JPEG` for
  all 1000 wnids, including ImageNet's odd files (a greyscale JPEG, a CMYK JPEG, a PNG named `.JPEG`).
- MOS iNaturalist/SUN/Places: `<Set>/images/*.jpg`; DTD: `dtd/images/<category>/<category>_<4 digits>.jpg`
  for its 47 categories (with DTD's stray hidden `images/waffled/.directory`); OpenImage-O: a flat folder;
  SSB-hard: `ssb_hard/<wnid>/*.JPEG` (OpenOOD's copy); NINCO: `NINCO/NINCO_OOD_classes/<class>/*.jpg`
  beside the unit-test and popular-dataset folders that must not be read; ImageNet-O: `<wnid>/*.jpg`
  and its README.
- CUB_200_2011: `images.txt`, `train_test_split.txt` (1 = train), `image_class_labels.txt`, `classes.txt`,
  `images/<NNN.Name>/*.jpg`; Stanford Cars: `car_data/{train,test}/<Make Model Year>/*.jpg`; Food-101:
  `meta/{train,test,classes}.txt`, `images/<class>/<id>.jpg`; Oxford-IIIT Pets: `annotations/{trainval,test,
  list}.txt` (rows `Stem class_id species breed_id`), `images/<Stem>.jpg` and the stray `.mat` files.

The Food-101 class folders and the Pets breeds with their class ids are written here from the published
archives' structure (recalled, since the archives cannot be downloaded on the build machines), not read
from oodbench's class-name files: the rehearsal then checks those files against an independent copy.

Every ID test image of class c is a byte-identical copy of a pool image of class c, so a nearest-neighbour
probe fitted on the pool must classify every ID test image correctly when the labels of the two splits
agree (tests/test_rehearsal.py checks that).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from benchmark.data import read_classnames

# Food-101 meta/classes.txt: the 101 class folders, in the archive's order.
FOOD101_FOLDERS = """
apple_pie baby_back_ribs baklava beef_carpaccio beef_tartare beet_salad beignets bibimbap bread_pudding
breakfast_burrito bruschetta caesar_salad cannoli caprese_salad carrot_cake ceviche cheese_plate cheesecake
chicken_curry chicken_quesadilla chicken_wings chocolate_cake chocolate_mousse churros clam_chowder club_sandwich
crab_cakes creme_brulee croque_madame cup_cakes deviled_eggs donuts dumplings edamame eggs_benedict escargots
falafel filet_mignon fish_and_chips foie_gras french_fries french_onion_soup french_toast fried_calamari fried_rice
frozen_yogurt garlic_bread gnocchi greek_salad grilled_cheese_sandwich grilled_salmon guacamole gyoza hamburger
hot_and_sour_soup hot_dog huevos_rancheros hummus ice_cream lasagna lobster_bisque lobster_roll_sandwich
macaroni_and_cheese macarons miso_soup mussels nachos omelette onion_rings oysters pad_thai paella pancakes
panna_cotta peking_duck pho pizza pork_chop poutine prime_rib pulled_pork_sandwich ramen ravioli red_velvet_cake
risotto samosa sashimi scallops seaweed_salad shrimp_and_grits spaghetti_bolognese spaghetti_carbonara spring_rolls
steak strawberry_shortcake sushi tacos takoyaki tiramisu tuna_tartare waffles
""".split()

# Oxford-IIIT Pets: breed file-name stems in class-id order (1..37); cats are capitalised (species 1).
PETS_BREEDS = """
Abyssinian american_bulldog american_pit_bull_terrier basset_hound beagle Bengal Birman Bombay boxer
British_Shorthair chihuahua Egyptian_Mau english_cocker_spaniel english_setter german_shorthaired great_pyrenees
havanese japanese_chin keeshond leonberger Maine_Coon miniature_pinscher newfoundland Persian pomeranian pug Ragdoll
Russian_Blue saint_bernard samoyed scottish_terrier shiba_inu Siamese Sphynx staffordshire_bull_terrier
wheaten_terrier yorkshire_terrier
""".split()

# DTD's 47 texture categories (the folders of dtd/images).
DTD_CATEGORIES = """
banded blotchy braided bubbly bumpy chequered cobwebbed cracked crosshatched crystalline dotted fibrous flecked
freckled frilly gauzy grid grooved honeycombed interlaced knitted lacelike lined marbled matted meshed paisley
perforated pitted pleated polka-dotted porous potholed scaly smeared spiralled sprinkled stained stratified striped
studded swirly veined waffled woven wrinkled zigzagged
""".split()

CUB_CLASSES = 200
CARS_CLASSES = 196


@dataclass
class Miniature:
    """Where the copies lie, what `data prepare --from` takes for each dataset, and how many images each holds."""

    downloads: Path
    sources: dict[str, Path] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    classnames: dict[str, list[str]] = field(default_factory=dict)  # class-name file -> names the copy implies


class _Images:
    """Writes tiny images, each from its own seed (a 4x4 grid of random colours, scaled up)."""

    def __init__(self) -> None:
        self.seed = 0

    def pixels(self) -> np.ndarray:
        self.seed += 1
        rng = np.random.default_rng(self.seed)
        grid = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        h, w = (12, 16) if self.seed % 2 else (16, 12)
        return np.kron(grid, np.ones((h // 4, w // 4, 1), dtype=np.uint8))

    def blob(self, kind: str = "rgb") -> bytes:
        """Encoded bytes: an RGB JPEG, or ImageNet's odd files (`grey` JPEG, `cmyk` JPEG, `png` bytes)."""
        image = Image.fromarray(self.pixels())
        out = io.BytesIO()
        if kind == "grey":
            image.convert("L").save(out, format="JPEG", quality=90)
        elif kind == "cmyk":
            image.convert("CMYK").save(out, format="JPEG", quality=90)
        elif kind == "png":
            image.save(out, format="PNG")
        else:
            image.save(out, format="JPEG", quality=90)
        return out.getvalue()


def _write(path: Path, blob: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)


def _imagenet(mini: Miniature, images: _Images) -> None:
    """ILSVRC2012 train and val sorted into wnid folders; val image of class c is a copy of train image 0."""
    top = mini.downloads / "ILSVRC2012"
    wnids = read_classnames("imagenet1k.wnids")
    second = set(read_classnames("imagenet10.wnids")) | set(read_classnames("imagenet20.wnids"))
    odd = {wnids[3]: "grey", wnids[7]: "cmyk", wnids[11]: "png"}  # as in ILSVRC2012, a few files are not RGB JPEGs
    for i, wnid in enumerate(wnids, start=1):
        blob = images.blob(odd.get(wnid, "rgb"))
        _write(top / "train" / wnid / f"{wnid}_{i}.JPEG", blob)
        _write(top / "val" / wnid / f"ILSVRC2012_val_{i:08d}.JPEG", blob)
        if wnid in second:  # a second pool image, so the few-shot split leaves a validation part
            _write(top / "train" / wnid / f"{wnid}_{10000 + i}.JPEG", images.blob())
    (top / "val" / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n")  # stray non-image file
    sub = {name: read_classnames(f"{name}.wnids") for name in ("imagenet10", "imagenet20", "imagenet100")}
    mini.sources |= {"imagenet1k-train": top / "train", "imagenet1k-val": top / "val"}
    mini.counts |= {"imagenet1k-val": 1000, "imagenet1k-train": 1000 + len(second)}
    names = dict(zip(wnids, read_classnames("imagenet1k.txt"), strict=True))
    mini.classnames["imagenet1k.txt"] = [names[w] for w in wnids]
    for stem, ws in sub.items():
        mini.sources |= {f"{stem}-train": top / "train", f"{stem}-val": top / "val"}
        mini.counts |= {f"{stem}-val": len(ws), f"{stem}-train": len(ws) + len(set(ws) & second)}
        mini.classnames[f"{stem}.txt"] = read_classnames(f"{stem}.txt")  # MCM's names, shipped beside the wnids


def _ood(mini: Miniature, images: _Images) -> None:
    d = mini.downloads
    for name, folder, n in (("inaturalist-ood", "iNaturalist", 5), ("sun-ood", "SUN", 4), ("places-ood", "Places", 3)):
        for i in range(n):  # the MOS tarballs unpack to <Set>/images/<file>.jpg
            _write(d / folder / "images" / f"{folder.lower()}_{i:05d}.jpg", images.blob())
        mini.sources[name], mini.counts[name] = d / folder, n
    for cat in DTD_CATEGORIES:
        _write(d / "dtd" / "images" / cat / f"{cat}_0{100 + len(cat)}.jpg", images.blob())
    (d / "dtd" / "images" / "waffled" / ".directory").write_text("[Dolphin]\n")
    (d / "dtd" / "labels").mkdir(parents=True)
    (d / "dtd" / "labels" / "train1.txt").write_text("banded/banded_0105.jpg\n")
    mini.sources["textures-ood"], mini.counts["textures-ood"] = d / "dtd" / "images", len(DTD_CATEGORIES)
    for i in range(3):
        _write(d / "openimage_o" / f"{i:016x}.jpg", images.blob())
    mini.sources["openimage-o"], mini.counts["openimage-o"] = d / "openimage_o", 3
    for wnid in ("n00004475", "n00440218"):  # ImageNet-21K classes
        for i in range(2):
            _write(d / "ssb_hard" / wnid / f"{wnid}_{i}.JPEG", images.blob())
    mini.sources["ssb-hard"], mini.counts["ssb-hard"] = d / "ssb_hard", 4
    for cls in ("amphiuma_means", "caracal_caracal", "ginkgo_biloba"):
        _write(d / "NINCO" / "NINCO_OOD_classes" / cls / f"{cls}_1.jpg", images.blob())
    _write(d / "NINCO" / "NINCO_OOD_unit_tests" / "black" / "black_1.jpg", images.blob())
    _write(d / "NINCO" / "NINCO_popular_datasets_subsamples" / "Places" / "places_1.jpg", images.blob())
    mini.sources["ninco"], mini.counts["ninco"] = d / "NINCO" / "NINCO_OOD_classes", 3
    for wnid in ("n01443537", "n01484850"):
        for i in range(2):
            _write(d / "imagenet-o" / wnid / f"{wnid}_{i}.jpg", images.blob())
    (d / "imagenet-o" / "README.txt").write_text("ImageNet-O\n")
    mini.sources["imagenet-o"], mini.counts["imagenet-o"] = d / "imagenet-o", 4


def _cub(mini: Miniature, images: _Images) -> None:
    """CUB_200_2011 with one train image per class and one test image (a copy of it)."""
    top = mini.downloads / "CUB_200_2011"
    classes = [f"{c:03d}.Bird_species_{c}" for c in range(1, CUB_CLASSES + 1)]
    classes[0], classes[-1] = "001.Black_footed_Albatross", "200.Common_Yellowthroat"
    rows: dict[str, list[str]] = {"images": [], "split": [], "labels": []}
    image_id = 0
    for c, cls in enumerate(classes, start=1):
        blob = images.blob()
        stem = cls.split(".", 1)[1]
        for is_train in (1, 0):
            image_id += 1
            rel = f"{cls}/{stem}_{image_id:04d}_{100 + c}.jpg"
            _write(top / "images" / rel, blob)
            rows["images"].append(f"{image_id} {rel}")
            rows["split"].append(f"{image_id} {is_train}")
            rows["labels"].append(f"{image_id} {c}")
    (top / "images.txt").write_text("\n".join(rows["images"]) + "\n")
    (top / "train_test_split.txt").write_text("\n".join(rows["split"]) + "\n")
    (top / "image_class_labels.txt").write_text("\n".join(rows["labels"]) + "\n")
    (top / "classes.txt").write_text("".join(f"{c} {cls}\n" for c, cls in enumerate(classes, start=1)))
    (top / "bounding_boxes.txt").write_text("1 60.0 27.0 325.0 304.0\n")
    (top / "README").write_text("CUB-200-2011\n")
    mini.sources |= {"cub200-train": top, "cub200-test": top}
    mini.counts |= {"cub200-train": CUB_CLASSES, "cub200-test": CUB_CLASSES}
    mini.classnames["cub200.txt"] = [cls.split(".", 1)[1].replace("_", " ") for cls in classes]


def _cars(mini: Miniature, images: _Images) -> None:
    """The common `car_data` copy of Stanford Cars: `{train,test}/<Make Model Year>/<5 digits>.jpg`."""
    top = mini.downloads / "car_data" / "car_data"
    names = [f"Make{c:03d} Model{c} Sedan {2000 + c % 13}" for c in range(CARS_CLASSES - 3)]
    names += ["AM General Hummer SUV 2000", "Ram C-V Cargo Van Minivan 2012", "smart fortwo Convertible 2012"]
    for c, name in enumerate(names):
        blob = images.blob()
        _write(top / "train" / name / f"{c + 1:05d}.jpg", blob)
        _write(top / "test" / name / f"{c + 1:05d}.jpg", blob)
    mini.sources |= {"stanford-cars-train": top / "train", "stanford-cars-test": top / "test"}
    mini.counts |= {"stanford-cars-train": CARS_CLASSES, "stanford-cars-test": CARS_CLASSES}
    mini.classnames["stanford-cars196.txt"] = sorted(names)


def _food101(mini: Miniature, images: _Images) -> None:
    top = mini.downloads / "food-101"
    train, test = [], []
    for c, folder in enumerate(FOOD101_FOLDERS):
        blob = images.blob()
        for split, ident in ((train, 100000 + c), (test, 200000 + c)):
            _write(top / "images" / folder / f"{ident}.jpg", blob)
            split.append(f"{folder}/{ident}")
    (top / "meta").mkdir(parents=True)
    (top / "meta" / "train.txt").write_text("\n".join(train) + "\n")
    (top / "meta" / "test.txt").write_text("\n".join(test) + "\n")
    (top / "meta" / "classes.txt").write_text("\n".join(FOOD101_FOLDERS) + "\n")
    (top / "README.txt").write_text("Food-101\n")
    mini.sources |= {"food101-train": top, "food101-test": top}
    mini.counts |= {"food101-train": len(FOOD101_FOLDERS), "food101-test": len(FOOD101_FOLDERS)}
    mini.classnames["food101.txt"] = [f.replace("_", " ") for f in FOOD101_FOLDERS]


def _pets(mini: Miniature, images: _Images) -> None:
    top = mini.downloads / "oxford-iiit-pet"
    rows: dict[str, list[str]] = {"trainval": [], "test": []}
    for c, breed in enumerate(PETS_BREEDS, start=1):
        species = 1 if breed[0].isupper() else 2
        breed_id = sum(1 for b in PETS_BREEDS[:c] if (1 if b[0].isupper() else 2) == species)
        blob = images.blob()
        for split, n in (("trainval", 100), ("test", 200)):
            stem = f"{breed}_{n + c}"
            _write(top / "images" / f"{stem}.jpg", blob)
            rows[split].append(f"{stem} {c} {species} {breed_id}")
    (top / "images" / "Abyssinian_100.mat").write_bytes(b"MATLAB 5.0 MAT-file")  # the archive holds a few of these
    ann = top / "annotations"
    ann.mkdir(parents=True)
    for split, lines in rows.items():
        (ann / f"{split}.txt").write_text("\n".join(lines) + "\n")
    header = (
        "#Image CLASS-ID SPECIES BREED ID\n#ID: 1:37 Class ids\n#SPECIES: 1:Cat 2:Dog\n#BREED ID: 1-25:Cat 1:12:Dog\n"
    )
    (ann / "list.txt").write_text(header + "\n".join(rows["trainval"] + rows["test"]) + "\n")
    mini.sources |= {"oxford-pets-trainval": top, "oxford-pets-test": top}
    mini.counts |= {"oxford-pets-trainval": len(PETS_BREEDS), "oxford-pets-test": len(PETS_BREEDS)}
    mini.classnames["oxford-pets37.txt"] = [b.replace("_", " ") for b in PETS_BREEDS]


def write_miniatures(downloads: Path) -> Miniature:
    """Every registered real dataset as a miniature copy under `downloads`, in its authors' layout."""
    mini = Miniature(downloads=downloads)
    images = _Images()
    for writer in (_imagenet, _ood, _cub, _cars, _food101, _pets):
        writer(mini, images)
    return mini
