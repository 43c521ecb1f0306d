"""The torch-free catalog of methods and scores (methods/catalog.py): it equals the runtime registries for every
built-in method and score, reads without importing, and imports (never guesses) what it cannot read."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import methods
from methods import METHODS, SCORES, load_methods
from methods.catalog import builtin_catalog, catalog, method_info, read_modules, score_info

ROOT = Path(__file__).resolve().parents[1]


def test_the_catalog_equals_the_runtime_registries_for_every_method_and_score():
    cat = builtin_catalog()
    assert cat.imported == {}, f"modules the catalog had to import (simplify their declarations): {cat.imported}"
    load_methods()
    builtin = {f"methods.{m}" for m in methods.builtin_modules()}
    runtime_methods = {n: method_info(n, c) for n, c in METHODS.items() if c.__module__ in builtin}
    runtime_scores = {n: score_info(s) for n, s in SCORES.items() if s.fn.__module__ in builtin}
    assert sorted(cat.methods) == sorted(runtime_methods)  # same names (the runtime's order follows imports)
    for name, info in runtime_methods.items():
        assert cat.methods[name] == info, name
    assert sorted(cat.scores) == sorted(runtime_scores)
    for name, info in runtime_scores.items():
        assert cat.scores[name] == info, name


def test_reading_the_catalog_imports_neither_torch_nor_any_method_module():
    code = (
        "import sys; from methods.catalog import catalog; c = catalog(); "
        "print(len(c.methods), 'torch' in sys.modules, sorted(m for m in sys.modules if m.startswith('methods.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    n, torch_loaded, loaded = out.stdout.split(" ", 2)
    assert int(n) >= 8 and torch_loaded == "False"
    assert set(eval(loaded)) <= {"methods.base", "methods.scores", "methods.catalog"}  # noqa: S307 - our own output


def _package(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    for module, text in files.items():
        (folder / f"{module}.py").write_text(textwrap.dedent(text))
    return folder


BASE = """
    from __future__ import annotations
    from dataclasses import dataclass, field
    from typing import ClassVar
    import torch  # never imported by the reader: nothing below needs it
    from methods.base import METHODS, TEST_TIME, Method, MethodConfig, param

    SCALE = 2.0
    EXTRA = ("b",)

    @dataclass(frozen=True)
    class AConfig(MethodConfig):
        lr: float = param(0.001 * SCALE, low=0.0, high=1.0)
        sizes: tuple[int, ...] = param((1, 2), low=1, high=64)
        name: str = "a" " b"
        negative: int = param(-3, low=-10, high=10)
        ignored: ClassVar[int] = 5
        listy: tuple = field(default_factory=tuple)

    @METHODS.register("static_a")
    class A(Method):
        Config = AConfig
        protocol = TEST_TIME
        uses = frozenset({"extra-data"})
        provides = frozenset({"local", "neg_logits"}) | frozenset(EXTRA)
        paper = ("Someone. A paper. "
                 "2024.")
        family_defaults = {"imagenet": {"lr": 0.5}}

        def predict(self, batch):
            return torch.zeros(1)
"""

CHILD = """
    from __future__ import annotations
    from dataclasses import dataclass
    from methods.base import METHODS, param
    from methods.scores import register_score
    from .alpha import A, AConfig

    @dataclass(frozen=True)
    class BConfig(AConfig):
        epochs: int = param(5, low=1, high=9)
        lr: float = param(0.25, low=0.0, high=1.0)  # overrides keep the base field's place

    @METHODS.register("static_b")
    class B(A):
        Config = BConfig
        paper = "Child paper."

    def _reduce(local_logits, logit_scale, **_):
        return local_logits

    @register_score("static_score", params={"T": 2.0, "on": "logits"}, requires=frozenset({"neg_logits"}))
    def static_score(out, *, T, on):
        '''First line of the doc.

        More.'''
        return out.logits

    @register_score("static_local", params={}, local=_reduce)
    def static_local(out):
        return out.logits
"""


def test_the_reader_follows_bases_across_modules_without_importing(tmp_path, monkeypatch):
    folder = _package(tmp_path, "staticpkg", {"alpha": BASE, "beta": CHILD})
    cat = read_modules("staticpkg", folder, ["alpha", "beta"])
    assert cat.imported == {}
    assert "staticpkg.alpha" not in sys.modules and "staticpkg.beta" not in sys.modules
    a, b = cat.methods["static_a"], cat.methods["static_b"]
    assert (a.protocol, a.uses, a.provides, a.paper) == (
        "test-time",
        frozenset({"extra-data"}),
        frozenset({"local", "neg_logits", "b"}),
        "Someone. A paper. 2024.",
    )
    assert a.needs == frozenset() and a.family_defaults == {"imagenet": {"lr": 0.5}}
    assert json.loads(a.defaults) == {"lr": 0.002, "sizes": [1, 2], "name": "a b", "negative": -3, "listy": []}
    assert (b.protocol, b.paper, b.uses) == ("test-time", "Child paper.", frozenset({"extra-data"}))
    assert b.defaults == json.dumps(
        {"lr": 0.25, "sizes": [1, 2], "name": "a b", "negative": -3, "listy": [], "epochs": 5},
        sort_keys=True,
        separators=(",", ":"),
    )
    s, loc = cat.scores["static_score"], cat.scores["static_local"]
    assert (s.defaults, s.requires, s.description) == (
        {"T": 2.0, "on": "logits"},
        frozenset({"neg_logits"}),
        "First line of the doc.",
    )
    assert loc.requires == frozenset({"local"}) and loc.description == ""

    # and the runtime agrees, once the modules are imported for real
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import staticpkg.beta  # noqa: F401 - registers static_a and static_b

        assert method_info("static_a", METHODS.get("static_a")) == a
        assert method_info("static_b", METHODS.get("static_b")) == b
        assert score_info(SCORES.get("static_score")) == s
        assert score_info(SCORES.get("static_local")) == loc
    finally:
        for name in ("static_a", "static_b"):
            METHODS.remove(name)
        for name in ("static_score", "static_local"):
            SCORES.remove(name)
        for mod in ("staticpkg", "staticpkg.alpha", "staticpkg.beta"):
            sys.modules.pop(mod, None)


@pytest.mark.parametrize(
    ("declaration", "why", "value"),
    [
        ("lr: float = param(compute_lr(), low=0.0, high=9.0)", "function dynpkg.gamma.compute_lr", 0.125),
        # a third-party import stands in for torch
        ("lr: float = param(numpy.e, low=0.0, high=9.0)", "import numpy", 2.718281828459045),
    ],
)
def test_what_the_reader_cannot_evaluate_is_imported_never_guessed(tmp_path, monkeypatch, declaration, why, value):
    text = f"""
        from __future__ import annotations
        from dataclasses import dataclass
        import numpy
        from methods.base import METHODS, Method, MethodConfig, param

        def compute_lr():
            return 0.125

        @dataclass(frozen=True)
        class CConfig(MethodConfig):
            {declaration}

        @METHODS.register("dynamic_c")
        class C(Method):
            Config = CConfig
            paper = "P."

            def predict(self, batch):
                return None
    """
    folder = _package(tmp_path, "dynpkg", {"gamma": text})
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        cat = read_modules("dynpkg", folder, ["gamma"])
        assert list(cat.imported) == ["dynpkg.gamma"] and why in cat.imported["dynpkg.gamma"]
        assert json.loads(cat.methods["dynamic_c"].defaults) == {"lr": value}  # the imported module's answer
    finally:
        METHODS.remove("dynamic_c")
        for mod in ("dynpkg", "dynpkg.gamma"):
            sys.modules.pop(mod, None)


def test_a_registration_that_is_not_a_decorator_is_imported(tmp_path, monkeypatch):
    text = """
        from dataclasses import dataclass
        from methods.base import METHODS, Method, MethodConfig

        class D(Method):
            paper = "P."

            def predict(self, batch):
                return None

        METHODS.add("plain_d", D)
    """
    folder = _package(tmp_path, "addpkg", {"delta": text})
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        cat = read_modules("addpkg", folder, ["delta"])
        assert "registers without a plain decorator" in cat.imported["addpkg.delta"]
        assert cat.methods["plain_d"].defaults == "{}"
    finally:
        METHODS.remove("plain_d")
        for mod in ("addpkg", "addpkg.delta"):
            sys.modules.pop(mod, None)


def test_methods_registered_in_this_process_outside_the_package_are_listed():
    from methods.base import Method

    class Temp(Method):
        paper = "Temporary."

        def predict(self, batch):
            return None

    Temp.__module__ = "oodbench_user_method_temp"
    with METHODS.temporarily("temp_method", Temp):
        assert "temp_method" in catalog().methods
    assert "temp_method" not in catalog().methods


def test_bases_and_configs_from_a_shared_subpackage_are_read_too(tmp_path):
    folder = _package(
        tmp_path,
        "sharedpkg",
        {
            "epsilon": """
                from dataclasses import dataclass
                from methods.base import METHODS, param
                from sharedpkg.shared.bases import NegBase, NegConfig

                @dataclass(frozen=True)
                class EConfig(NegConfig):
                    extra: float = param(0.5, low=0.0, high=1.0)

                @METHODS.register("static_e")
                class E(NegBase):
                    Config = EConfig
                    paper = "E."
            """
        },
    )
    (folder / "shared").mkdir()
    (folder / "shared" / "__init__.py").write_text("")
    (folder / "shared" / "bases.py").write_text(
        textwrap.dedent(
            """
            from dataclasses import dataclass
            import torch  # the shared module imports torch; nothing the declarations need comes from it
            from methods.base import ZERO_SHOT, Method, MethodConfig, param

            WORDS = 10_000

            @dataclass(frozen=True)
            class NegConfig(MethodConfig):
                n_words: int = param(WORDS, low=1, high=100_000)

            class NegBase(Method):
                protocol = ZERO_SHOT
                provides = frozenset({"neg_logits"})

                def predict(self, batch):
                    return torch.zeros(1)
            """
        )
    )
    cat = read_modules("sharedpkg", folder, ["epsilon"])
    assert cat.imported == {}
    e = cat.methods["static_e"]
    assert (e.protocol, e.provides, e.paper) == ("zero-shot", frozenset({"neg_logits"}), "E.")
    assert json.loads(e.defaults) == {"n_words": 10000, "extra": 0.5}
