"""Negative labels: mining far-away words, NegLabel's grouped score, CSP's conjugated pool, AdaNeg's memory.

Pure torch functions on embeddings and logits, shared by the NegLabel, CSP and AdaNeg methods. Each
follows its authors' code (docs/fidelity-negatives.md gives file and line for every rule and default);
where a rule is not reproducible as written (GPU random permutations, file-system order) the departure
is named in the docstring.

Conventions: text and image embeddings are L2-normalised rows; logits are cosine similarities times a
logit scale (CLIP's 100); every score is higher-is-more-ID.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

from benchmark.errors import OodbenchError

PROMPTS_FILE = Path(__file__).with_name("negative_prompts.json")
_CHUNK = 4096  # candidate rows per similarity block (70k words x 1k classes would be 280 MB at once)


@cache
def _prompt_table() -> dict[str, dict[str, list[str]]]:
    return json.loads(PROMPTS_FILE.read_text(encoding="utf-8"))


def prompts(method: str) -> dict[str, list[str]]:
    """The reference prompt templates of `method` ("neglabel", "csp", "adaneg"): keys id, noun, adjective
    (and superclass for CSP), each a list of templates with one `{}`."""
    table = _prompt_table()
    if method not in table:
        raise OodbenchError(f"no negative-label prompts for {method!r}; known: {', '.join(sorted(table))}")
    return {k: list(v) for k, v in table[method].items() if k != "source"}


def _check_matrix(name: str, x: torch.Tensor, *, dim: int | None = None) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 2:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise OodbenchError(f"{name} must be a 2-D tensor [rows, features], got {shape}")
    if x.shape[0] == 0:
        raise OodbenchError(f"{name} is empty (0 rows)")
    if dim is not None and x.shape[1] != dim:
        raise OodbenchError(f"{name} has {x.shape[1]} features per row, expected {dim} like the other inputs")
    if not x.is_floating_point() or not torch.isfinite(x).all():
        raise OodbenchError(f"{name} must hold finite floating-point values")


# ----------------------------------------------------------------------------------------------------------------
# Mining (NegLabel's NegMining, CSP's variant, AdaNeg's variant)


def row_quantile(values: torch.Tensor, *, q: float, rule: str = "linear", chunk: int = 4096) -> torch.Tensor:
    """The q-quantile of each row of [W, C].

    `rule="linear"` interpolates between order statistics like `torch.quantile` (NegLabel, CSP);
    `rule="index"` takes the sorted row's entry at index int(C * q) (AdaNeg). Rows are sorted in chunks,
    so tensors above torch.quantile's size limit work too.
    """
    if not 0.0 <= q <= 1.0:
        raise OodbenchError(f"quantile q must be in [0, 1], got {q}")
    c = values.shape[1]
    out = []
    for start in range(0, values.shape[0], chunk):
        s = torch.sort(values[start : start + chunk].double(), dim=1).values
        if rule == "linear":
            pos = q * (c - 1)
            lo = int(pos)
            hi = min(lo + 1, c - 1)
            out.append(s[:, lo] + (pos - lo) * (s[:, hi] - s[:, lo]))
        elif rule == "index":
            out.append(s[:, min(int(c * q), c - 1)])
        else:
            raise OodbenchError(f"quantile rule must be 'linear' or 'index', got {rule!r}")
    return torch.cat(out)


@dataclass(frozen=True)
class NegativeSelection:
    """Selected negative labels: indices into the noun and the adjective candidates, most distant first."""

    nouns: torch.Tensor
    adjectives: torch.Tensor

    def __len__(self) -> int:
        return len(self.nouns) + len(self.adjectives)


def negative_distance(
    *,
    id_features: torch.Tensor,
    candidates: torch.Tensor,
    percentile: float = 0.95,
    quantile_rule: str = "linear",
    exclude_above: float | None = None,
) -> torch.Tensor:
    """How close each candidate is to the ID labels [W]: the `percentile` quantile of its cosine similarity
    to the C ID label embeddings (lower = farther from ID). With `exclude_above` (CSP: 0.95), a candidate
    whose highest similarity to any ID label exceeds it gets 1.0, so it is never picked."""
    out = []
    for start in range(0, candidates.shape[0], _CHUNK):
        sim = candidates[start : start + _CHUNK] @ id_features.T  # in the inputs' precision, as the reference
        closeness = row_quantile(sim, q=percentile, rule=quantile_rule)
        if exclude_above is not None:
            too_close = sim.max(dim=1).values > exclude_above
            closeness = torch.where(too_close, torch.ones_like(closeness), closeness)
        out.append(closeness)
    return torch.cat(out)


def mine_negatives(
    *,
    id_features: torch.Tensor,
    noun_features: torch.Tensor,
    adjective_features: torch.Tensor,
    ratio: float | None = 0.15,
    count: int | None = None,
    percentile: float = 0.95,
    quantile_rule: str = "linear",
    exclude_above: float | None = None,
) -> NegativeSelection:
    """Pick the candidate words farthest from the ID labels, nouns and adjectives separately.

    NegLabel (and CSP): the first int(n * `ratio`) nouns and int(n * `ratio`) adjectives by increasing
    `negative_distance`. AdaNeg: `count` labels in all (ratio=None), split between the parts of speech
    in proportion to their pool sizes (int(count * n_adj / n) adjectives, the rest nouns).

    Ties are broken by candidate index (a stable sort), so the result is deterministic; the reference
    sorts unstably on the GPU.
    """
    _check_matrix("id_features", id_features)
    dim = id_features.shape[1]
    _check_matrix("noun_features", noun_features, dim=dim)
    _check_matrix("adjective_features", adjective_features, dim=dim)
    n_noun, n_adj = noun_features.shape[0], adjective_features.shape[0]
    if (ratio is None) == (count is None):
        raise OodbenchError("give exactly one of ratio (NegLabel, CSP) or count (AdaNeg)")
    if ratio is not None:
        if not 0.0 < ratio <= 1.0:
            raise OodbenchError(f"ratio must be in (0, 1], got {ratio}")
        k_noun, k_adj = int(n_noun * ratio), int(n_adj * ratio)
    else:
        if not 0 < count <= n_noun + n_adj:
            raise OodbenchError(f"count must be in 1..{n_noun + n_adj} (the candidate pool), got {count}")
        k_adj = int(count * (n_adj / (n_adj + n_noun)))
        k_noun = count - k_adj
        if k_noun > n_noun:
            raise OodbenchError(f"count {count} needs {k_noun} nouns but the pool has {n_noun}")
    if k_noun + k_adj == 0:
        raise OodbenchError(f"ratio {ratio} of {n_noun} nouns and {n_adj} adjectives selects no label")
    picks = []
    for feats, k in ((noun_features, k_noun), (adjective_features, k_adj)):
        d = negative_distance(
            id_features=id_features,
            candidates=feats,
            percentile=percentile,
            quantile_rule=quantile_rule,
            exclude_above=exclude_above,
        )
        picks.append(torch.sort(d, stable=True).indices[:k])
    return NegativeSelection(nouns=picks[0], adjectives=picks[1])


# ----------------------------------------------------------------------------------------------------------------
# NegLabel's score


def group_permutation(*, size: int, seed: int = 0) -> torch.Tensor:
    """The column permutation before grouping: torch.randperm(size) on a CPU generator seeded with `seed`.

    AdaNeg's reference draws exactly this (torch.manual_seed(0), then a CPU randperm). NegLabel and CSP
    draw it on the GPU (torch.randperm(..., device="cuda") after seeding), whose stream differs from the
    CPU's, so their exact grouping cannot be reproduced off that hardware; this CPU permutation stands in.
    """
    if size < 1:
        raise OodbenchError(f"permutation size must be >= 1, got {size}")
    return torch.randperm(size, generator=torch.Generator().manual_seed(seed))


def grouped_id_probability(
    *,
    id_logits: torch.Tensor,
    neg_logits: torch.Tensor,
    groups: int = 1,
    temperature: float = 1.0,
    permutation: torch.Tensor | None = None,
) -> torch.Tensor:
    """NegLabel's score [N] (float64): the softmax mass on the ID labels against the negative labels.

    With `groups` = g > 1 (NegLabel's grouping strategy), the last M mod g negative columns are dropped,
    the remaining M' columns are reordered by `permutation` (length M', e.g. `group_permutation`; None
    keeps their order), cut into g consecutive groups, and the score is the mean over groups of
    sum_c softmax([id, group] / T)_c. g = 1 is the paper's ungrouped score (the NegLabel code's own
    ngroup=1 branch skips the softmax; CSP's code applies it, as here).
    """
    lse_id, lse_neg = _group_logsumexps(id_logits, neg_logits, groups, temperature, permutation)
    lse_all = torch.logaddexp(lse_id, lse_neg)  # [N, g]
    return torch.exp(lse_id - lse_all).mean(dim=1)  # float64: ID scores sit within 1e-7 of 1


def grouped_log_ood_mass(
    *,
    id_logits: torch.Tensor,
    neg_logits: torch.Tensor,
    groups: int = 1,
    temperature: float = 1.0,
    permutation: torch.Tensor | None = None,
) -> torch.Tensor:
    """log(1 - s) [N] (float64) of the grouped score s of `grouped_id_probability`, computed without forming
    1 - s: the log of the mean over groups of the softmax mass on the negative labels. ID scores sit within
    1e-7 of 1, so s itself loses them in float32; this value keeps them (s = -expm1(value))."""
    lse_id, lse_neg = _group_logsumexps(id_logits, neg_logits, groups, temperature, permutation)
    lse_all = torch.logaddexp(lse_id, lse_neg)  # [N, g]
    return torch.logsumexp(lse_neg - lse_all, dim=1) - math.log(groups)


def _group_logsumexps(
    id_logits: torch.Tensor,
    neg_logits: torch.Tensor,
    groups: int,
    temperature: float,
    permutation: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """logsumexp of the ID logits [N, 1] and of each group of negative logits [N, g], all divided by T."""
    _check_matrix("id_logits", id_logits)
    _check_matrix("neg_logits", neg_logits)
    n, m = neg_logits.shape
    if id_logits.shape[0] != n:
        raise OodbenchError(f"id_logits has {id_logits.shape[0]} rows but neg_logits has {n}")
    if not 1 <= groups <= m:
        raise OodbenchError(f"groups must be in 1..{m} (the number of negative labels), got {groups}")
    if temperature <= 0:
        raise OodbenchError(f"temperature must be > 0, got {temperature}")
    kept = m - m % groups
    neg = neg_logits[:, :kept]
    if permutation is not None:
        perm = torch.as_tensor(permutation, dtype=torch.long, device=neg.device)
        if perm.shape != (kept,) or not torch.equal(torch.sort(perm).values, torch.arange(kept, device=neg.device)):
            raise OodbenchError(f"permutation must be a permutation of range({kept}) (M={m} minus M mod groups)")
        neg = neg[:, perm]
    id_t = id_logits.double() / temperature
    neg_t = neg.double().reshape(n, groups, kept // groups) / temperature
    return torch.logsumexp(id_t, dim=1, keepdim=True), torch.logsumexp(neg_t, dim=2)


# ----------------------------------------------------------------------------------------------------------------
# Prompt pools (what is encoded for each candidate word)


def neglabel_prompts(*, nouns: Sequence[str], adjectives: Sequence[str]) -> tuple[list[str], list[str]]:
    """One prompt per candidate: nouns "the nice {}", adjectives "This is a {} photo" (NegLabel)."""
    p = prompts("neglabel")
    return [p["noun"][0].format(w) for w in nouns], [p["adjective"][0].format(w) for w in adjectives]


def conjugated_phrases(
    *, adjectives: Sequence[str], superclasses: Sequence[str] | None = None, seed: int = 0
) -> list[str]:
    """CSP's conjugated semantic pool: each adjective joined with one superclass word ("{} scene",
    "{} creature", ...) drawn by Python's `random` seeded with `seed`, one draw per adjective in order,
    as the reference draws `random.choice` while reading its word files."""
    if superclasses is None:
        superclasses = prompts("csp")["superclass"]
    if not superclasses or any(s.count("{}") != 1 for s in superclasses):
        raise OodbenchError("superclass templates must be non-empty and hold exactly one {} each")
    rng = random.Random(seed)
    return [rng.choice(list(superclasses)).format(a) for a in adjectives]


def csp_prompts(
    *, nouns: Sequence[str], adjectives: Sequence[str], seed: int = 0
) -> tuple[list[list[str]], list[list[str]]]:
    """What CSP encodes: per noun its 8 noun templates; per adjective its conjugated phrase in 4 templates.
    The features of each word's prompts are averaged (`average_prompt_features`, normalize_first=False)."""
    p = prompts("csp")
    noun_prompts = [[t.format(w) for t in p["noun"]] for w in nouns]
    phrases = conjugated_phrases(adjectives=adjectives, superclasses=p["superclass"], seed=seed)
    adjective_prompts = [[t.format(ph) for t in p["adjective"]] for ph in phrases]
    return noun_prompts, adjective_prompts


def average_prompt_features(features: torch.Tensor, *, normalize_first: bool) -> torch.Tensor:
    """[W, T, D] text features of T prompts per word -> [W, D] unit rows. CSP averages the raw encoder
    outputs (normalize_first=False); AdaNeg normalizes each prompt's feature first (`text_center`)."""
    if features.ndim != 3 or features.shape[1] == 0:
        raise OodbenchError(
            f"prompt features must be [words, prompts, dim] with >= 1 prompt, got {tuple(features.shape)}"
        )
    f = features.double()
    if normalize_first:
        f = f / f.norm(dim=-1, keepdim=True)
    mean = f.mean(dim=1)
    return (mean / mean.norm(dim=-1, keepdim=True)).to(features.dtype)


# ----------------------------------------------------------------------------------------------------------------
# AdaNeg's memory (test-time adaptive negatives)


@dataclass(frozen=True)
class AdaNegState:
    """AdaNeg's feature memory: per label (C ID classes, then M negatives) 1 + memory_length feature slots.

    Slot 0 holds the label's text embedding; confident test images fill slots 1..memory_length-1, and a row
    counts as full from then on, as in the reference, whose counter starts at 1 and stops at `memleng`.
    The last slot is written only when a replacement finds no stored entropy above 0 (entropies can be a
    hair below 0 because of the +1e-8 inside the log); it is kept so that such cases match the reference.
    `entropy` is each stored image's prediction entropy (0 for text and empty slots); `filled` is the
    counter (starts at 1).
    """

    features: torch.Tensor  # [L, S, D]
    entropy: torch.Tensor  # [L, S]
    filled: torch.Tensor  # [L] int64
    num_classes: int

    @property
    def text_features(self) -> torch.Tensor:
        return self.features[:, 0]


def adaneg_init(*, text_features: torch.Tensor, num_classes: int, memory_length: int = 10) -> AdaNegState:
    """An empty memory for the label embeddings [L, D] (ID classes first); `memory_length` is the reference's
    `memleng` (10)."""
    _check_matrix("text_features", text_features)
    if not 0 < num_classes < text_features.shape[0]:
        raise OodbenchError(f"num_classes must be in 1..{text_features.shape[0] - 1} (labels = ID + negatives)")
    if memory_length < 2:
        raise OodbenchError(f"memory_length must be >= 2 (the text slot counts as the first), got {memory_length}")
    n_labels, dim = text_features.shape
    features = torch.zeros(n_labels, memory_length + 1, dim, dtype=text_features.dtype, device=text_features.device)
    features[:, 0] = text_features
    return AdaNegState(
        features=features,
        entropy=torch.zeros(n_labels, memory_length + 1, dtype=text_features.dtype, device=text_features.device),
        filled=torch.ones(n_labels, dtype=torch.long, device=text_features.device),
        num_classes=num_classes,
    )


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    p = torch.softmax(logits, dim=-1)
    return -(p * torch.log(p + 1e-8)).sum(dim=-1)


def adaneg_update(
    *,
    state: AdaNegState,
    image_features: torch.Tensor,
    logit_scale: float = 100.0,
    threshold: float = 0.5,
    gap: float = 0.5,
    groups: int = 5,
    permutation: torch.Tensor | None = None,
) -> AdaNegState:
    """Write one test batch into the memory; returns a new state (the given one is not changed).

    Each image's vanilla NegLabel score s (`grouped_id_probability` of its logits against the label text
    embeddings) decides: s > threshold + gap (1 - threshold) stores it under its top ID class (task-adaptive
    ID memory), s < threshold - gap threshold under its top negative label, else nowhere. A full row keeps
    the new image only if its entropy (softmax over the ID, resp. negative, logits) is below some stored
    one, replacing the stored image with the highest entropy. Images are written in batch order.
    """
    _check_matrix("image_features", image_features, dim=state.features.shape[2])
    c = state.num_classes
    logits = logit_scale * image_features.to(state.features.dtype) @ state.text_features.T
    vanilla = grouped_id_probability(
        id_logits=logits[:, :c], neg_logits=logits[:, c:], groups=groups, permutation=permutation
    )
    features, entropy, filled = state.features.clone(), state.entropy.clone(), state.filled.clone()
    capacity = features.shape[1] - 1  # the reference's memleng
    for part, active in (
        (slice(0, c), vanilla > threshold + gap * (1 - threshold)),
        (slice(c, None), vanilla < threshold - gap * threshold),
    ):
        part_logits = logits[:, part]
        top = part_logits.argmax(dim=1) + part.start
        ent = _entropy(part_logits)
        for i in torch.nonzero(active).flatten().tolist():
            label, e = int(top[i]), ent[i]
            if filled[label] < capacity:
                slot = int(filled[label])
                filled[label] += 1
            elif (e < entropy[label]).any():
                slot = int(torch.sort(entropy[label], stable=True).indices[-1])  # the highest entropy
            else:
                continue
            features[label, slot] = image_features[i]
            entropy[label, slot] = e
    return AdaNegState(features=features, entropy=entropy, filled=filled, num_classes=c)


def adaneg_logits(
    *,
    state: AdaNegState,
    image_features: torch.Tensor,
    logit_scale: float = 100.0,
    sample_adaptive: bool = False,
    beta: float = 5.0,
) -> torch.Tensor:
    """Logits [B, L] of the images against the memory's adapted label embeddings.

    Task-adaptive (the reference's default, samada=False): each label's embedding is the normalised sum
    of its slots (text plus stored images). Sample-adaptive (samada=True): slots are weighted per image
    by exp(-beta (1 - cos(slot, image))) before summing; the reference casts its beta 5.5 to int, so 5.
    """
    _check_matrix("image_features", image_features, dim=state.features.shape[2])
    img = image_features.double()
    mem = state.features.double()  # [L, S, D]
    if not sample_adaptive:
        proto = mem.sum(dim=1)
        proto = proto / proto.norm(dim=-1, keepdim=True)
        return (logit_scale * img @ proto.T).to(image_features.dtype)
    sim = torch.einsum("bd,lsd->bls", img, mem)  # cosine of each image to each slot
    weight = torch.exp(-beta * (1.0 - sim))
    gram = torch.einsum("lsd,ltd->lst", mem, mem)
    numerator = (weight * sim).sum(dim=2)
    norm = torch.einsum("bls,lst,blt->bl", weight, gram, weight).clamp_min(0).sqrt()
    return (logit_scale * numerator / norm).to(image_features.dtype)


def adaneg_score(
    *,
    vanilla_logits: torch.Tensor,
    adapted_logits: torch.Tensor,
    num_classes: int,
    lambda_: float = 0.1,
    groups: int = 5,
    permutation: torch.Tensor | None = None,
) -> torch.Tensor:
    """AdaNeg's score [N] ("combine"): grouped NegLabel score of the adapted logits plus `lambda_` times
    that of the vanilla logits; both [N, L] with the C ID classes first."""
    if vanilla_logits.shape != adapted_logits.shape:
        raise OodbenchError(
            f"vanilla {tuple(vanilla_logits.shape)} and adapted {tuple(adapted_logits.shape)} logits differ"
        )
    c = num_classes

    def score(x: torch.Tensor) -> torch.Tensor:
        return grouped_id_probability(id_logits=x[:, :c], neg_logits=x[:, c:], groups=groups, permutation=permutation)

    return score(adapted_logits) + lambda_ * score(vanilla_logits)


def adaneg_prediction(
    *, vanilla_logits: torch.Tensor, adapted_logits: torch.Tensor, num_classes: int, lambda_: float = 0.1
) -> torch.Tensor:
    """AdaNeg's ID class prediction [N]: argmax over the ID classes of softmax(vanilla) + lambda softmax(adapted),
    both softmaxes taken over all L labels."""
    prob = torch.softmax(vanilla_logits.double(), dim=1) + lambda_ * torch.softmax(adapted_logits.double(), dim=1)
    return prob[:, :num_classes].argmax(dim=1)
