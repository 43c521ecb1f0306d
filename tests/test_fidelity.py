"""The code's defaults against docs/fidelity.md (and docs/fidelity-negatives.md, in the same format), the
tables that trace every setting to the authors' code.

The document is the specification. Each method section must name every Config field of the method;
a `` `field` `` row's `ours` literal must equal the Config default and a `` `field` @ family `` row
the method's `family_defaults` entry; every `family_defaults` entry must have its row. Score sections
hold the score's parameters, Suites rows the suites' templates, OOD sets, class files and versions.
A failure means the code drifted from the reference or the table is stale: fix the one that is wrong.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import methods
from benchmark.suites import SUITES
from methods import METHODS, SCORES

DOCS = Path(__file__).resolve().parents[1] / "docs"
DOC = DOCS / "fidelity.md"
# further documents in the same format, one per family of methods; a section may appear in only one of them
MORE_DOCS = (DOCS / "fidelity-tuning.md", DOCS / "fidelity-negatives.md")
HEADER = ("setting", "ours", "reference", "source", "status")
FAMILIES = ("imagenet", "cub200", "stanford-cars", "food101", "oxford-pets", "demo")
SHARED_SECTIONS = ("Augmentation", "Prompts and class names", "Suites")

STATUS = re.compile(r"(same|departs: \S.*|unverified: \S.*)")
SOURCE = re.compile(r"[\w.-]+/[\w.-]+ \S+:L\d+")
HEADING = re.compile(r"## (?:(Method|Score) `([\w-]+)`|(.+))")
FIELD = re.compile(r"`(\w+)`")
FAMILY_FIELD = re.compile(r"`(\w+)` @ ([\w-]+)")
SUITE_ATTR = re.compile(r"`([\w.-]+)` (\w+)")
LITERAL = re.compile(r"`([^`]+)`")


@dataclass(frozen=True)
class Row:
    setting: str
    ours: str
    reference: str
    source: str
    status: str
    line: int


@dataclass(frozen=True)
class Section:
    kind: str  # "Method", "Score" or "Shared"
    name: str
    rows: tuple[Row, ...]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parse(text: str) -> dict[tuple[str, str], Section]:
    """Sections keyed by (kind, name), each with the rows of its one table. Malformed input raises ValueError."""
    sections: dict[tuple[str, str], Section] = {}
    key: tuple[str, str] | None = None
    rows: list[Row] = []
    tables = 0
    lines = text.splitlines()

    def close() -> None:
        if key is None:
            return
        if tables != 1:
            raise ValueError(f"section {key} must hold exactly one table, found {tables}")
        sections[key] = Section(key[0], key[1], tuple(rows))

    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            close()
            m = HEADING.fullmatch(line.rstrip())
            if m is None:
                raise ValueError(f"line {i + 1}: unreadable heading {line!r}")
            key = (m[1], m[2]) if m[1] else ("Shared", m[3].strip())
            if key in sections:
                raise ValueError(f"line {i + 1}: section {key} appears twice")
            rows, tables = [], 0
        elif line.startswith("|"):
            if key is None:
                raise ValueError(f"line {i + 1}: a table before the first section")
            if tuple(_cells(line)) != HEADER:
                raise ValueError(f"line {i + 1}: a table must start with the header {' | '.join(HEADER)}")
            if i + 1 >= len(lines) or set(lines[i + 1].replace("|", "").strip()) - {"-", ":", " "}:
                raise ValueError(f"line {i + 2}: the header must be followed by a separator row")
            tables += 1
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = _cells(lines[i])
                if len(cells) != len(HEADER):
                    raise ValueError(f"line {i + 1}: {len(cells)} cells, expected {len(HEADER)} (no `|` inside cells)")
                rows.append(Row(*cells, line=i + 1))
                i += 1
            continue
        i += 1
    close()
    return sections


def literal(row: Row) -> object:
    """The `ours` cell of a backticked-setting row: one Python literal in backticks."""
    m = LITERAL.fullmatch(row.ours)
    if m is None:
        raise ValueError(f"line {row.line}: `ours` of {row.setting} must be one Python literal in backticks")
    return ast.literal_eval(m[1])


def same_value(a: object, b: object) -> bool:
    """Equal and of the same type all the way down (1 is not 1.0, a list is not a tuple)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.fixture(scope="module")
def doc() -> dict[tuple[str, str], Section]:
    sections = parse(DOC.read_text(encoding="utf-8"))
    for path in MORE_DOCS:
        more = parse(path.read_text(encoding="utf-8"))
        twice = sorted(set(sections) & set(more))
        if twice:
            raise ValueError(f"{path.name} documents {twice} again; each section lives in one document")
        sections.update(more)
    return sections


methods.load_methods()
METHOD_NAMES = METHODS.names()
SCORE_NAMES = SCORES.names()


# ---- the parser itself -------------------------------------------------------------------------------


GOOD = """intro
## Method `m`

| setting | ours | reference | source | status |
|---|---|---|---|---|
| `n_ctx` | `16` | 16 | a/b c.py:L3 | same |
| `epochs` @ imagenet | `50` | 50 | a/b d.md:L13 | same |
| schedule | per epoch | per epoch | a/b e.py:L1-4 | departs: why |

## Suites

| setting | ours | reference | source | status |
|---|---|---|---|---|
| `s` near | `("x",)` | x | a/b f.py:L2 | unverified: cannot check |
"""


def test_parser_reads_sections_rows_and_literals():
    sections = parse(GOOD)
    assert set(sections) == {("Method", "m"), ("Shared", "Suites")}
    rows = sections[("Method", "m")].rows
    assert [r.setting for r in rows] == ["`n_ctx`", "`epochs` @ imagenet", "schedule"]
    assert literal(rows[0]) == 16 and FAMILY_FIELD.fullmatch(rows[1].setting)[2] == "imagenet"
    assert literal(sections[("Shared", "Suites")].rows[0]) == ("x",)


@pytest.mark.parametrize(
    "broken,complaint",
    [
        (GOOD.replace("| schedule | per epoch |", "| schedule | per | epoch |"), "6 cells"),
        (GOOD.replace("| setting | ours | reference | source | status |", "| a | b | c | d | e |", 1), "header"),
        (GOOD + "\n## Method `m`\n", "twice"),
        ("## Lonely\n\nno table here\n", "exactly one table"),
        (GOOD + "\n" + GOOD.split("## Suites")[1], "found 2"),
    ],
)
def test_parser_rejects_malformed_tables(broken, complaint):
    with pytest.raises(ValueError, match=complaint):
        parse(broken)


def test_same_value_is_strict_about_types():
    assert same_value((0.08, 1.0), (0.08, 1.0))
    assert not same_value(1, 1.0) and not same_value(True, 1) and not same_value([1], (1,))
    assert not same_value((0.5, 1), (0.5, 1.0))


# ---- the document's own shape ------------------------------------------------------------------------


def test_every_row_has_a_valid_status_and_a_source_when_it_claims_one(doc):
    bad = []
    for section in doc.values():
        for row in section.rows:
            if not STATUS.fullmatch(row.status):
                bad.append(f"line {row.line}: status {row.status!r} is not same / departs: ... / unverified: ...")
            elif not row.status.startswith("unverified") and not SOURCE.search(row.source):
                bad.append(f"line {row.line}: a `{row.status.split(':')[0]}` row needs an `owner/repo path:Lnn` source")
            if not row.setting or not row.ours or not row.reference:
                bad.append(f"line {row.line}: empty setting, ours or reference")
    assert not bad, "\n".join(bad)


def test_shared_sections_exist(doc):
    missing = [s for s in SHARED_SECTIONS if ("Shared", s) not in doc]
    assert not missing, f"docs/fidelity.md lacks the sections {missing}"


def test_every_documented_method_and_score_is_registered(doc):
    stale = [
        f"{k} {n}"
        for k, n in doc
        if (k == "Method" and n not in METHOD_NAMES) or (k == "Score" and n not in SCORE_NAMES)
    ]
    assert not stale, f"docs/fidelity.md documents what is not registered: {stale}"


def test_families_and_settings_are_well_formed(doc):
    bad = []
    for (kind, name), section in doc.items():
        seen: set[str] = set()
        for row in section.rows:
            if row.setting in seen and row.setting.startswith("`"):
                bad.append(f"line {row.line}: {row.setting} appears twice in {name}")
            seen.add(row.setting)
            fam = FAMILY_FIELD.fullmatch(row.setting)
            if fam and (kind != "Method" or fam[2] not in FAMILIES):
                bad.append(f"line {row.line}: family rows belong in method sections, families are {FAMILIES}")
            if row.setting.startswith("`") and not (
                FIELD.fullmatch(row.setting) or fam or SUITE_ATTR.fullmatch(row.setting)
            ):
                bad.append(
                    f"line {row.line}: a backticked setting must be `field`, `field` @ family or `suite` attribute"
                )
    assert not bad, "\n".join(bad)


# ---- methods -----------------------------------------------------------------------------------------


def _fields(name: str) -> dict[str, object]:
    cls = METHODS.get(name)
    defaults = cls.Config()
    return {f.name: getattr(defaults, f.name) for f in dataclasses.fields(cls.Config)}


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_method_has_a_section(doc, name):
    assert ("Method", name) in doc, f"docs/fidelity.md has no section ## Method `{name}`"


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_every_config_field_has_a_row(doc, name):
    rows = doc.get(("Method", name), Section("Method", name, ())).rows
    documented = {m[1] for r in rows if (m := FIELD.fullmatch(r.setting))}
    missing = sorted(set(_fields(name)) - documented)
    assert not missing, f"{name}: Config fields without a row in docs/fidelity.md: {missing}"


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_config_defaults_follow_the_table(doc, name):
    fields = _fields(name)
    bad = []
    for row in doc.get(("Method", name), Section("Method", name, ())).rows:
        m = FIELD.fullmatch(row.setting)
        if m is None:
            continue
        want = literal(row)
        if m[1] not in fields:
            bad.append(f"{m[1]}: the table sets it to {want!r}, the Config has no such field")
        elif not same_value(fields[m[1]], want):
            bad.append(f"{m[1]}: Config default {fields[m[1]]!r}, table {want!r} (line {row.line})")
    assert not bad, f"{name}:\n" + "\n".join(bad)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_family_defaults_follow_the_table(doc, name):
    cls = METHODS.get(name)
    family_defaults = getattr(cls, "family_defaults", {})
    fields = _fields(name)
    bad = []
    documented = set()
    for row in doc.get(("Method", name), Section("Method", name, ())).rows:
        m = FAMILY_FIELD.fullmatch(row.setting)
        if m is None:
            continue
        field, family = m[1], m[2]
        documented.add((family, field))
        want = literal(row)
        have = family_defaults.get(family, {}).get(field)
        if field not in fields:
            bad.append(f"{field} @ {family}: the Config has no such field")
        elif not same_value(have, want):
            bad.append(f"{field} @ {family}: family_defaults gives {have!r}, table {want!r} (line {row.line})")
    for family, overrides in family_defaults.items():
        for field in overrides:
            if (family, field) not in documented:
                bad.append(f"{field} @ {family}: set in family_defaults but has no row in docs/fidelity.md")
    assert not bad, f"{name}:\n" + "\n".join(bad)


# ---- scores ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCORE_NAMES)
def test_score_has_a_section(doc, name):
    assert ("Score", name) in doc, f"docs/fidelity.md has no section ## Score `{name}`"


@pytest.mark.parametrize("name", SCORE_NAMES)
def test_score_parameters_follow_the_table(doc, name):
    params = getattr(SCORES.get(name), "params", None)
    rows = [r for r in doc.get(("Score", name), Section("Score", name, ())).rows if FIELD.fullmatch(r.setting)]
    bad = []
    for row in rows:
        param, want = FIELD.fullmatch(row.setting)[1], literal(row)
        if params is None or param not in params:
            bad.append(f"{param}: the table sets it to {want!r}, the score has no such parameter")
        elif not same_value(params[param], want):
            bad.append(f"{param}: score default {params[param]!r}, table {want!r} (line {row.line})")
    documented = {FIELD.fullmatch(r.setting)[1] for r in rows}
    bad += [f"{p}: a parameter of the score without a row" for p in sorted(set(params or {}) - documented)]
    assert not bad, f"{name}:\n" + "\n".join(bad)


# ---- suites ------------------------------------------------------------------------------------------


def test_suites_follow_the_table(doc):
    bad = []
    for row in doc[("Shared", "Suites")].rows:
        m = SUITE_ATTR.fullmatch(row.setting)
        if m is None:
            continue
        suite, attr = m[1], m[2]
        if suite not in SUITES:
            bad.append(f"line {row.line}: no suite {suite!r}")
            continue
        spec = SUITES.get(suite)
        want = literal(row)
        if not hasattr(spec, attr):
            bad.append(f"{suite}.{attr}: the suite spec has no such attribute")
        elif not same_value(getattr(spec, attr), want):
            bad.append(f"{suite}.{attr}: registry {getattr(spec, attr)!r}, table {want!r} (line {row.line})")
    assert not bad, "\n".join(bad)
