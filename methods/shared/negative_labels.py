"""Negative-label pools as NegLabel, CSP and AdaNeg build them: word lists encoded, mined, cached and pinned.

Mining encodes every WordNet candidate (about 70,000 words, several prompts each for CSP) with the
backbone's text tower, which takes minutes, so the mined pool is cached under the feature-cache folder,
keyed by everything that decides it: the method, the vocabulary's sha256, the ID class names, the
backbone (architecture and weights sha256) and the mining settings. The pool's label list has a sha256
of its own (`NegativeLabels.sha256`): a method config may pin it (`negatives_sha256`), so a run whose
pool differs from the pinned one fails instead of silently measuring another word list.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.atomic import save_npy_atomic, write_json_atomic
from benchmark.backbones import Backbone
from benchmark.errors import OodbenchError
from methods.shared.negatives import average_prompt_features
from methods.shared.text_tower import encode_embeddings, pool_index, token_embeddings
from methods.shared.wordnet import Vocabulary

CACHE_FOLDER = "negative_labels"
CACHE_FORMAT = 1
ENCODE_CHUNK = 2048  # prompts per text-tower pass


# ----------------------------------------------------------------------------------------------------------------
# Encoding


@torch.no_grad()
def encode_prompts(backbone: Backbone, prompts: Sequence[str], *, chunk: int = ENCODE_CHUNK) -> torch.Tensor:
    """Raw text features [N, D] (float32, not normalised) of `prompts`, on the backbone's device.

    Prompts go through the text tower in order of token length, so that each chunk is cut after its own
    longest prompt (methods.shared.text_tower): equal to `encode_text` up to float rounding, much faster."""
    if not prompts:
        raise OodbenchError("no prompts to encode")
    model, device = backbone.model, backbone.device
    tokens = backbone.tokenizer(list(prompts))
    pool = pool_index(model, tokens)
    order = torch.argsort(pool, stable=True)
    out: torch.Tensor | None = None
    for start in range(0, len(order), chunk):
        idx = order[start : start + chunk]
        tok = tokens[idx].to(device)
        x = encode_embeddings(model, token_embeddings(model, tok), pool[idx].to(device)).float()
        if out is None:
            out = torch.empty(len(tokens), x.shape[1], dtype=torch.float32, device=device)
        out[idx.to(device)] = x
    return out


def encode_words(
    backbone: Backbone, words: Sequence[str], templates: Sequence[str], *, normalize_first: bool = False
) -> torch.Tensor:
    """Unit text embeddings [W, D] of `words`, each the average of its prompts `t.format(word)` over
    `templates` (raw encoder outputs averaged, as CSP; `normalize_first` normalises each prompt first)."""
    if not templates or any(t.count("{}") != 1 for t in templates):
        raise OodbenchError(f"templates must be non-empty and hold exactly one {{}} each, got {list(templates)}")
    prompts = [t.format(w) for w in words for t in templates]
    feats = encode_prompts(backbone, prompts).reshape(len(words), len(templates), -1)
    return average_prompt_features(feats, normalize_first=normalize_first)


# ----------------------------------------------------------------------------------------------------------------
# Candidate words


def candidates(
    vocab: Vocabulary, *, classnames: Sequence[str] = (), drop_classnames: bool = False, limit: int = 0
) -> tuple[list[str], list[str]]:
    """(nouns, adjectives) of a vocabulary: without the words equal to an ID class name when
    `drop_classnames` (exact match, as the references compare), and only the first `limit` of each part
    of speech when `limit` > 0 (a budget for tests and quick looks; 0 keeps every word, as the references)."""
    drop = {c.strip() for c in classnames} if drop_classnames else set()
    nouns = [w for w in vocab.nouns if w not in drop]
    adjectives = [w for w in vocab.adjectives if w not in drop]
    if limit:
        nouns, adjectives = nouns[:limit], adjectives[:limit]
    if not nouns or not adjectives:
        raise OodbenchError(
            f"the candidate pool has {len(nouns)} nouns and {len(adjectives)} adjectives; mining needs both "
            f"(check the WordNet files and the excluded lexicographer files)"
        )
    return nouns, adjectives


# ----------------------------------------------------------------------------------------------------------------
# The mined pool, cached and pinned


def labels_sha256(labels: Sequence[str]) -> str:
    """sha256 of a negative-label list (one label per line, in column order): what `negatives_sha256` pins."""
    return hashlib.sha256("\n".join(labels).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class NegativeLabels:
    """A mined pool: label texts in column order, their unit embeddings, and how many of them are nouns."""

    labels: tuple[str, ...]
    features: torch.Tensor  # [M, D] unit rows
    n_nouns: int

    @property
    def sha256(self) -> str:
        return labels_sha256(self.labels)

    def __len__(self) -> int:
        return len(self.labels)


def backbone_key(backbone: Backbone) -> dict[str, str]:
    """What identifies a backbone's text tower in a pool's cache key."""
    return {"arch": backbone.arch, "weights_sha256": backbone.weights_sha256}


def _cache_folder(cache_dir: Path, key: Mapping[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()
    return Path(cache_dir) / CACHE_FOLDER / digest[:24]


def _load(folder: Path, key: Mapping[str, Any], device: torch.device) -> NegativeLabels | None:
    meta_path, feats_path = folder / "labels.json", folder / "features.npy"
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        feats = np.load(feats_path)
        labels = tuple(meta["labels"])
        ok = (
            meta.get("key") == json.loads(json.dumps(key))
            and meta.get("sha256") == labels_sha256(labels)
            and feats.ndim == 2
            and feats.shape[0] == len(labels)
            and np.isfinite(feats).all()
        )
        if ok:
            return NegativeLabels(labels=labels, features=torch.from_numpy(feats).to(device), n_nouns=meta["n_nouns"])
        problem = "its key, label hash or feature shape does not match"
    except Exception as err:  # truncated or garbled files: json and numpy raise several types
        problem = f"{type(err).__name__}: {err}"
    warnings.warn(f"The negative-label cache {folder} is unreadable ({problem}); mining again.", stacklevel=3)
    return None


def cached_negatives(
    *,
    key: Mapping[str, Any],
    mine: Callable[[], NegativeLabels],
    cache_dir: Path | None,
    device: torch.device,
) -> NegativeLabels:
    """The pool for `key`: read from `cache_dir` when an intact copy is there, else mined by `mine()` and
    written (features first, the label list last, so a half-written entry is never read). No cache_dir:
    mined every time. A cache that cannot be written costs a warning, never the run."""
    key = {**key, "format": CACHE_FORMAT}
    if cache_dir is None:
        return mine()
    folder = _cache_folder(cache_dir, key)
    found = _load(folder, key, device)
    if found is not None:
        return found
    pool = mine()
    meta = {"key": key, "labels": list(pool.labels), "n_nouns": pool.n_nouns, "sha256": pool.sha256}
    try:
        save_npy_atomic(folder / "features.npy", pool.features.float().cpu().numpy())
        write_json_atomic(folder / "labels.json", meta)
    except OSError as err:
        warnings.warn(f"Cannot write the negative-label cache {folder} ({err.strerror}); continuing.", stacklevel=2)
    return pool


def check_pin(pool: NegativeLabels, *, expected: str, method: str) -> None:
    """Fail when a pinned label-list hash (`negatives_sha256` in the config) differs from the mined pool's."""
    if expected and expected != pool.sha256:
        raise OodbenchError(
            f"Method {method!r} mined {len(pool)} negative labels with sha256 {pool.sha256}, but the config pins "
            f"negatives_sha256={expected}. The word list, the class names, the backbone or a mining setting "
            f"differs from the pinned run; drop negatives_sha256 to accept this list."
        )
