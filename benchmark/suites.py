"""Suite specs: one ID dataset, its few-shot pool, and near/far OOD groups, versioned."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from benchmark.datasets import DATASETS, DatasetSpec, load_families, read_classnames
from benchmark.errors import OodbenchError
from benchmark.registry import Registry

TEMPLATES_FILE = Path(__file__).parent / "prompts" / "templates.json"
OOD_GROUPS = ("near", "far")


@dataclass(frozen=True)
class SuiteSpec:
    """What a run measures. Changing data, prompts or scoring bumps `version`."""

    name: str
    version: int
    id_test: str
    pool: str
    near: tuple[str, ...]
    far: tuple[str, ...]
    classnames: str  # file under benchmark/datasets/classnames/
    templates: str  # key of benchmark/prompts/templates.json
    description: str = ""

    def class_names(self) -> list[str]:
        return read_classnames(self.classnames)

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


def register_suite(spec: SuiteSpec) -> SuiteSpec:
    return SUITES.add(spec.name, spec)


register_suite(SuiteSpec(
    name="fmnist-ood", version=1,
    id_test="fmnist-id6-test", pool="fmnist-id6-pool",
    near=("fmnist-near4",), far=("animal-mnist", "sklearn-digits", "textiles"),
    classnames="fmnist-id6.txt", templates="demo",
    description="Bundled demo: six Fashion-MNIST classes as ID, the other four as near OOD, "
                "animal silhouettes, digits and textiles as far OOD. Runs offline on a CPU.",
))
