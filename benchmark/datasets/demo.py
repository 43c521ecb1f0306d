"""The bundled demo suite's datasets (`fmnist-ood`), built by scripts/build_demo_data.py.

Sources, licences and file hashes are in demo_data/manifest.json.
"""

from __future__ import annotations

from benchmark.datasets import BundledSource, DatasetSpec, register_dataset

_FMNIST = (
    "Xiao, Rasul, Vollgraf. Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning "
    "Algorithms. arXiv:1708.07747, 2017."
)

register_dataset(
    DatasetSpec(
        name="fmnist-id6-test",
        version=1,
        source=BundledSource("fmnist_id_test.parquet"),
        num_images=3000,
        list_sha256="35381b2f47c0d05917e48d24104782e71f16f24fda6f4ea790e7e9b868f72e8f",
        classnames="fmnist-id6.txt",
        license="MIT",
        citation=_FMNIST,
        description="Fashion-MNIST test images of six ID classes, 500 each.",
    )
)
register_dataset(
    DatasetSpec(
        name="fmnist-id6-pool",
        version=1,
        source=BundledSource("fmnist_pool.parquet"),
        num_images=600,
        list_sha256="6908fd578d27b1187ca729ea9e0496334b827a938a168cde20e277f78a45ccba",
        classnames="fmnist-id6.txt",
        license="MIT",
        citation=_FMNIST,
        description=(
            "Few-shot pool: Fashion-MNIST train images of the six ID classes (100 each), held out of the demo "
            "backbone's training."
        ),
    )
)
register_dataset(
    DatasetSpec(
        name="fmnist-near4",
        version=1,
        source=BundledSource("fmnist_near.parquet"),
        num_images=2000,
        list_sha256="930ccb424a2d1475df5caf1e4fcd6040ee60682faff57ab890a6b72c68246120",
        license="MIT",
        citation=_FMNIST,
        description="Near OOD: Fashion-MNIST test images of Pullover, Coat, Shirt and Sneaker, 500 each.",
    )
)
register_dataset(
    DatasetSpec(
        name="animal-mnist",
        version=1,
        source=BundledSource("animals.parquet"),
        num_images=2000,
        list_sha256="d99be82624062eb0fa408a03f81db66f27e9ac8ae430d11ddf242e92e429585d",
        license="MIT",
        citation="Mohammadi. Animal-MNIST (PyPI package animal-mnist 0.4).",
        description="Far OOD: animal silhouettes, 200 of each of ten animals.",
    )
)
register_dataset(
    DatasetSpec(
        name="sklearn-digits",
        version=1,
        source=BundledSource("digits.parquet"),
        num_images=1797,
        list_sha256="a85c66ff49b7c023293dd94d2f226a6ccefccb69facb4b65587039d94e88d650",
        license="BSD-3-Clause",
        citation="Alpaydin, Kaynak. Optical Recognition of Handwritten Digits (UCI), via scikit-learn.",
        description="Far OOD: scikit-learn's 8x8 digits upscaled to 28x28.",
    )
)
register_dataset(
    DatasetSpec(
        name="textiles",
        version=1,
        source=BundledSource("textiles.parquet"),
        num_images=2000,
        list_sha256="a382bff1dd22c6fc6669efc8d40b3ffa8032ea1d39eaf2d8f24ad4a65310f217",
        license="MIT",
        citation="Megahed, Chen. conformal-clip-data 0.1.4 (PyPI), simulated textile images.",
        description="Far OOD: simulated textile images, grey, 28x28.",
    )
)
