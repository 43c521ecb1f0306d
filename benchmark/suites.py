"""Suite specs: one ID dataset, its few-shot pool, and near/far OOD groups, versioned.

A suite is pure description; its class names are read by benchmark.data.read_classnames (they may
live under the user's data root) and its prompt templates from benchmark/prompts/templates.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from benchmark.datasets import DATASETS, DatasetSpec, load_families
from benchmark.errors import OodbenchError
from benchmark.registry import Registry

TEMPLATES_FILE = Path(__file__).parent / "prompts" / "templates.json"
OOD_GROUPS = ("near", "far")


@dataclass(frozen=True)
class SuiteVersion:
    """What an earlier version of a suite measured, kept so that its result files still validate and are
    shown as that older version (never mixed with the current one)."""

    version: int
    id_test: str
    near: tuple[str, ...]
    far: tuple[str, ...]
    change: str  # what the next version changed, in a sentence

    def ood_sets(self) -> list[tuple[str, str]]:
        return [("near", d) for d in self.near] + [("far", d) for d in self.far]


@dataclass(frozen=True)
class SuiteSpec:
    """What a run measures. Changing data, prompts or scoring bumps `version`; the earlier versions
    go into `history` (oldest first)."""

    name: str
    version: int
    id_test: str
    pool: str
    near: tuple[str, ...]
    far: tuple[str, ...]
    classnames: str  # file under benchmark/datasets/classnames/ (or written under the data root by `data prepare`)
    templates: str  # key of benchmark/prompts/templates.json
    family: str  # the ID dataset family methods key their per-dataset settings by (Method.family_defaults)
    description: str = ""
    history: tuple[SuiteVersion, ...] = ()

    def at(self, version: int) -> SuiteVersion | None:
        """The suite as it was at `version` (the current one included); None for a version it never had."""
        if version == self.version:
            return SuiteVersion(self.version, self.id_test, self.near, self.far, change="")
        return next((h for h in self.history if h.version == version), None)

    def prompt_templates(self) -> list[str]:
        return load_templates(self.templates)

    def ood_sets(self) -> list[tuple[str, str]]:
        """(group, dataset name) for every OOD set, near first."""
        return [("near", d) for d in self.near] + [("far", d) for d in self.far]

    def datasets(self) -> dict[str, DatasetSpec]:
        load_families()
        names = [self.id_test, self.pool, *self.near, *self.far]
        return {n: DATASETS.get(n) for n in names}


def load_templates(key: str) -> list[str]:
    table = json.loads(TEMPLATES_FILE.read_text(encoding="utf-8"))
    if key not in table:
        raise OodbenchError(f"Unknown prompt template set {key!r}; {TEMPLATES_FILE.name} has {sorted(table)}.")
    return list(table[key])


SUITES: Registry[SuiteSpec] = Registry("suite")
# Scores changed for every suite in version 2: energy, entropy and max_logit read cosine similarities (MCM's
# evaluation) instead of logit-scaled logits, and GL-MCM's weight is the parameter lambda_local.
_V2_SCORES = (
    "Version 2 computes energy, entropy and max_logit on cosine similarities / T as MCM's evaluation does "
    "(version 1: on logits = logit_scale x cosine)."
)


def register_suite(spec: SuiteSpec) -> SuiteSpec:
    return SUITES.add(spec.name, spec)


register_suite(
    SuiteSpec(
        name="fmnist-ood",
        version=2,
        id_test="fmnist-id6-test",
        pool="fmnist-id6-pool",
        near=("fmnist-near4",),
        far=("animal-mnist", "sklearn-digits", "textiles"),
        classnames="fmnist-id6.txt",
        templates="demo",
        family="demo",
        description="Bundled demo: six Fashion-MNIST classes as ID, the other four as near OOD, "
        "animal silhouettes, digits and textiles as far OOD. Runs offline on a CPU.",
        history=(
            SuiteVersion(
                1,
                "fmnist-id6-test",
                ("fmnist-near4",),
                ("animal-mnist", "sklearn-digits", "textiles"),
                change=_V2_SCORES + " The demo backbone was retrained with a 77-token text context.",
            ),
        ),
    )
)


# Real-scale suites (MCM / Ming & Li IJCV 2023 protocol: the single prompt "a photo of a {}", no full stop,
# deeplearning-wisc/MCM utils/detection_util.py:L228). Their data is pinned locally by `oodbench data prepare`;
# `oodbench data check SUITE` says what is missing and where to get it.
_FAR = ("inaturalist-ood", "sun-ood", "places-ood", "textures-ood")
# What version 2 of every real suite changed (docs/fidelity.md traces each change to the reference code).
_V2_PROMPT = 'Version 2 prompts with MCM\'s "a photo of a {}" (no full stop) instead of "a photo of a {}.".'
_V2_NAMES = "Version 2 names the classes as MCM does (warplane, sailboat, ...)."


def _v1(id_test: str, near: tuple[str, ...], far: tuple[str, ...], change: str) -> tuple[SuiteVersion, ...]:
    """The history of a suite whose version 1 measured these sets."""
    return (SuiteVersion(1, id_test, near, far, change=change),)


register_suite(
    SuiteSpec(
        name="imagenet1k-far",
        version=2,
        id_test="imagenet1k-val",
        pool="imagenet1k-train",
        near=(),
        far=_FAR,
        classnames="imagenet1k.txt",
        templates="mcm",
        family="imagenet",
        description="ImageNet-1k against the MOS/MCM far OOD sets iNaturalist, SUN, Places and Textures.",
        history=_v1(
            "imagenet1k-val",
            (),
            _FAR,
            _V2_PROMPT + " " + _V2_SCORES,
        ),
    )
)
register_suite(
    SuiteSpec(
        name="imagenet1k-near",
        version=2,
        id_test="imagenet1k-val",
        pool="imagenet1k-train",
        near=("ssb-hard", "ninco", "imagenet-o"),
        far=(),
        classnames="imagenet1k.txt",
        templates="mcm",
        family="imagenet",
        description="ImageNet-1k against near OOD sets: SSB-hard, NINCO and ImageNet-O.",
        history=_v1(
            "imagenet1k-val",
            ("ssb-hard", "ninco", "imagenet-o"),
            (),
            _V2_PROMPT + " " + _V2_SCORES,
        ),
    )
)
register_suite(
    SuiteSpec(
        name="imagenet10-vs-20",
        version=2,
        id_test="imagenet10-val",
        pool="imagenet10-train",
        near=("imagenet20-val",),
        far=(),
        classnames="imagenet10.txt",
        templates="mcm",
        family="imagenet",
        description="MCM's hard near OOD task: ImageNet-10 as ID, the semantically close ImageNet-20 as OOD.",
        history=_v1(
            "imagenet10-val",
            ("imagenet20-val",),
            (),
            _V2_PROMPT + " " + _V2_NAMES + " " + _V2_SCORES,
        ),
    )
)
register_suite(
    SuiteSpec(
        name="imagenet20-vs-10",
        version=2,
        id_test="imagenet20-val",
        pool="imagenet20-train",
        near=("imagenet10-train",),
        far=(),
        classnames="imagenet20.txt",
        templates="mcm",
        family="imagenet",
        description="The reverse of imagenet10-vs-20: ImageNet-20 as ID, ImageNet-10 as OOD (its train split, "
        "as MCM uses it: larger, of a size comparable with the ID set).",
        history=_v1(
            "imagenet20-val",
            ("imagenet10-val",),
            (),
            _V2_PROMPT + " " + _V2_NAMES + " Its OOD set is ImageNet-10's train split, as in MCM "
            "(version 1: ImageNet-10 val). " + _V2_SCORES,
        ),
    )
)
register_suite(
    SuiteSpec(
        name="imagenet100-far",
        version=2,
        id_test="imagenet100-val",
        pool="imagenet100-train",
        near=(),
        far=_FAR,
        classnames="imagenet100.txt",
        templates="mcm",
        family="imagenet",
        description="ImageNet-100 (MCM's class list and names, shipped) against the four far OOD sets.",
        history=_v1(
            "imagenet100-val",
            (),
            _FAR,
            _V2_PROMPT + " " + _V2_NAMES + " " + _V2_SCORES,
        ),
    )
)
for _stem, _classes, _pool, _what in (
    ("cub200", "cub200.txt", "cub200-train", "CUB-200"),
    ("stanford-cars", "stanford-cars196.txt", "stanford-cars-train", "Stanford Cars-196"),
    ("food101", "food101.txt", "food101-train", "Food-101"),
    ("oxford-pets", "oxford-pets37.txt", "oxford-pets-trainval", "Oxford-IIIT Pets-37"),
):
    register_suite(
        SuiteSpec(
            name=f"{_stem}-far",
            version=2,
            id_test=f"{_stem}-test",
            pool=_pool,
            near=(),
            far=_FAR,
            classnames=_classes,
            templates="mcm",
            family=_stem,
            description=f"{_what} as ID against the four far OOD sets of imagenet1k-far.",
            history=_v1(f"{_stem}-test", (), _FAR, _V2_PROMPT + " " + _V2_SCORES),
        )
    )
