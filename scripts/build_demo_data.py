"""Build the bundled demo suite `fmnist-ood` (version 1) from packages that ship images.

    apt-get install dataset-fashion-mnist
    pip install --no-deps animal-mnist==0.4 conformal-clip-data==0.1.4
    python scripts/build_demo_data.py

Writes Parquet files in the Hugging Face `datasets` image layout (an `image` struct of PNG
bytes and a path, and an integer `label`) plus `manifest.json` into
benchmark/datasets/demo_data/. Then run `python scripts/hash_demo_data.py` to print the list
hashes that benchmark/datasets/demo.py pins.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
import demo_sources as src  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "benchmark" / "datasets" / "demo_data"
PER_CLASS_TEST = 500
ANIMALS_PER_CLASS = 200


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img, mode="L").save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _write(name: str, images: list[np.ndarray], labels: list[int], class_names: list[str] | None) -> dict:
    import datasets

    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=class_names) if class_names else datasets.Value("int64"),
        }
    )
    rows = {
        "image": [{"bytes": _png(im), "path": f"{name}/{i:05d}.png"} for i, im in enumerate(images)],
        "label": [int(x) for x in labels],
    }
    ds = datasets.Dataset.from_dict(rows, features=features)
    path = OUT / f"{name}.parquet"
    ds.to_parquet(str(path))
    return {"file": path.name, "count": len(images), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def _by_class(images: np.ndarray, labels: np.ndarray, classes, per_class: int, rng) -> tuple[list, list]:
    out_x, out_y = [], []
    for c in classes:
        idx = np.sort(rng.choice(np.flatnonzero(labels == c), per_class, replace=False))
        out_x += list(images[idx])
        out_y += [c] * per_class
    return out_x, out_y


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(src.SEED)
    id_names = [src.FMNIST_CLASSES[c] for c in src.ID_CLASS_IDS]
    remap = {c: i for i, c in enumerate(src.ID_CLASS_IDS)}
    files = {}

    train_x, train_y = src.fashion_mnist("train")
    pool = src.pool_indices(train_y)
    files["fmnist_pool"] = _write("fmnist_pool", list(train_x[pool]), [remap[c] for c in train_y[pool]], id_names)

    test_x, test_y = src.fashion_mnist("test")
    x, y = _by_class(test_x, test_y, src.ID_CLASS_IDS, PER_CLASS_TEST, rng)
    files["fmnist_id_test"] = _write("fmnist_id_test", x, [remap[c] for c in y], id_names)
    x, y = _by_class(test_x, test_y, src.NEAR_CLASS_IDS, PER_CLASS_TEST, rng)
    files["fmnist_near"] = _write("fmnist_near", x, [-1] * len(x), None)

    ax, ay = src.animal_mnist()
    x, _ = _by_class(ax, ay, range(10), ANIMALS_PER_CLASS, rng)
    files["animals"] = _write("animals", x, [-1] * len(x), None)

    from sklearn.datasets import load_digits

    digits = load_digits().images  # 8x8, values 0..16
    x = [np.asarray(Image.fromarray((d * 255 / 16).astype(np.uint8)).resize((28, 28), Image.BILINEAR)) for d in digits]
    files["digits"] = _write("digits", x, [-1] * len(x), None)

    import conformal_clip_data

    paths = sorted(conformal_clip_data.textile_simulated_root().glob("*/*.jpg"))
    x = [np.asarray(Image.open(p).convert("L").resize((28, 28), Image.LANCZOS)) for p in paths]
    files["textiles"] = _write("textiles", x, [-1] * len(x), None)

    import sklearn

    manifest = {
        "suite": "fmnist-ood",
        "version": 1,
        "built_by": "scripts/build_demo_data.py",
        "seed": src.SEED,
        "sources": {
            "fmnist_pool": {
                "package": "debian:dataset-fashion-mnist",
                "version": "0.0~git20200523.55506a9-1",
                "licence": "MIT",
                "what": f"Fashion-MNIST train, {src.POOL_PER_CLASS} per ID class, held out of the demo "
                "backbone's training",
            },
            "fmnist_id_test": {
                "package": "debian:dataset-fashion-mnist",
                "version": "0.0~git20200523.55506a9-1",
                "licence": "MIT",
                "what": f"Fashion-MNIST test, {PER_CLASS_TEST} per ID class",
            },
            "fmnist_near": {
                "package": "debian:dataset-fashion-mnist",
                "version": "0.0~git20200523.55506a9-1",
                "licence": "MIT",
                "what": f"Fashion-MNIST test, {PER_CLASS_TEST} per near-OOD class (Pullover, Coat, Shirt, Sneaker)",
            },
            "animals": {
                "package": "pypi:animal-mnist",
                "version": src.package_version("animal-mnist"),
                "licence": "MIT",
                "what": f"Animal-MNIST silhouettes, {ANIMALS_PER_CLASS} per animal class",
            },
            "digits": {
                "package": "pypi:scikit-learn",
                "version": sklearn.__version__,
                "licence": "BSD-3-Clause",
                "what": "sklearn.datasets.load_digits, 8x8 upscaled to 28x28",
            },
            "textiles": {
                "package": "pypi:conformal-clip-data",
                "version": src.package_version("conformal-clip-data"),
                "licence": "MIT",
                "what": "simulated textile images, grey, resized to 28x28",
            },
        },
        "files": files,
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    for name, f in files.items():
        print(f"{name:16s} {f['count']:6d} images  {f['sha256'][:16]}")


if __name__ == "__main__":
    main()
