"""Where the bundled demo's images come from, shared by the data builder and the backbone trainer.

Every source is a package that ships its images, so the demo is rebuilt offline:
Fashion-MNIST (Debian's ``dataset-fashion-mnist``), Animal-MNIST silhouettes (PyPI's
``animal-mnist``, read from its data file because its loader imports TensorFlow),
scikit-learn's digits and the textile images of PyPI's ``conformal-clip-data``.
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FMNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# ID classes and their near-OOD neighbours (Pullover/Coat/Shirt ~ T-shirt, Sneaker ~ Sandal/Ankle boot).
ID_CLASS_IDS = (0, 1, 3, 5, 8, 9)
NEAR_CLASS_IDS = (2, 4, 6, 7)
POOL_PER_CLASS = 100  # few-shot pool, held out of the backbone's training
SEED = 20261129


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images [N,28,28] uint8, labels [N]) of Fashion-MNIST's 'train' or 'test' split."""
    prefix = {"train": "train", "test": "t10k"}[split]
    images = FMNIST_DIR / f"{prefix}-images-idx3-ubyte.gz"
    if not images.exists():
        raise SystemExit(f"{images} is missing: install Debian's package with `apt-get install dataset-fashion-mnist`.")
    return _read_idx(images), _read_idx(FMNIST_DIR / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)


def pool_indices(train_labels: np.ndarray) -> np.ndarray:
    """Indices into Fashion-MNIST train that form the few-shot pool (sorted)."""
    rng = np.random.default_rng(SEED)
    picked = [rng.choice(np.flatnonzero(train_labels == c), POOL_PER_CLASS, replace=False) for c in ID_CLASS_IDS]
    return np.sort(np.concatenate(picked))


def animal_mnist() -> tuple[np.ndarray, np.ndarray]:
    import animal_mnist as pkg

    root = Path(pkg.__file__).parent / "data" / "Animal_MNIST"
    with gzip.open(root / "animal_data_version_3.gz", "rb") as f:
        images = np.asarray(pickle.load(f), dtype=np.uint8)
    with gzip.open(root / "animal_label_version_3.gz", "rb") as f:
        labels = np.asarray(pickle.load(f), dtype=np.int64)
    return images, labels


def package_version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)
