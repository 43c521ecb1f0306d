"""The generic registry and the registries built on it."""

from __future__ import annotations

import pytest

from benchmark.errors import OodbenchError, UnknownNameError
from benchmark.registry import Registry


def test_register_get_and_list():
    reg: Registry[int] = Registry("thing")
    reg.add("alpha", 1)

    @reg.register("beta")
    def beta():
        return 2

    assert reg.get("alpha") == 1
    assert reg.get("beta") is beta
    assert reg.names() == ["alpha", "beta"]
    assert "alpha" in reg and "gamma" not in reg and len(reg) == 2


def test_duplicate_name_is_an_error():
    reg: Registry[int] = Registry("thing")
    reg.add("alpha", 1)
    with pytest.raises(OodbenchError, match="registered twice"):
        reg.add("alpha", 2)
    assert reg.get("alpha") == 1


def test_typo_gets_suggestions_and_the_list_command():
    reg: Registry[int] = Registry("suite")
    reg.add("fmnist-ood", 1)
    with pytest.raises(UnknownNameError) as info:
        reg.get("fmnist-odd")
    msg = str(info.value)
    assert "Unknown suite 'fmnist-odd'" in msg
    assert "Did you mean 'fmnist-ood'?" in msg
    assert "oodbench list suites" in msg


def test_builtin_registries_are_populated():
    from benchmark.datasets import DATASETS, load_families
    from benchmark.suites import SUITES
    from methods import METHODS, SCORES, load_methods

    load_methods()
    load_families()
    assert "fmnist-ood" in SUITES
    assert "zero_shot" in METHODS
    assert {"mcm", "msp", "energy", "max_logit", "entropy"} <= set(SCORES.names())
    for name in SUITES.get("fmnist-ood").datasets():
        assert name in DATASETS
