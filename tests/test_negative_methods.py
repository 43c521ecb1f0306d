"""NegLabel, CSP, AdaNeg, NegPrompt and GalLoP: their pieces against independent re-computations of the
reference code's formulas, the mined pool's cache and pin, and the cut text tower against encode_text.

Runs on the tiny random open_clip model of test_method_contract and small WordNet pools (seconds)."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings

import numpy as np
import pytest
import torch
from test_method_contract import BACKBONE, CLASSNAMES, context

from benchmark.errors import OodbenchError
from methods import METHODS, SCORES, load_methods
from methods.base import FeatureBatch, FitData, make_config
from methods.gallop import topk_reduce
from methods.negprompt import cosine_rate
from methods.scores import ScoreInput
from methods.shared import negative_labels as nl
from methods.shared.class_prompts import ClassPrompts, context_from_words
from methods.shared.negatives import adaneg_logits, grouped_id_probability, grouped_log_ood_mass
from methods.shared.negatives import adaneg_score as reference_adaneg_score
from methods.shared.wordnet import vocabulary

load_methods()
SMALL = {"max_candidates": 700}  # 105 nouns and 105 adjectives at NegLabel's 15%


def build(name: str, cache_dir=None, **overrides):
    cls = METHODS.get(name)
    ctx = dataclasses.replace(context(), cache_dir=cache_dir)
    return cls(config=make_config(cls, {**SMALL, **overrides}), context=ctx)


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, BACKBONE.model.text_projection.shape[1], generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------------- text tower


def test_cut_text_tower_equals_encode_text():
    prompts = ["the nice cat", "This is a long and winding photo of a very small dog", "a", "the nice genus brodiaea"]
    with torch.no_grad():
        full = BACKBONE.model.encode_text(BACKBONE.tokenizer(prompts * 3)).float()
    torch.testing.assert_close(nl.encode_prompts(BACKBONE, prompts * 3, chunk=5), full, atol=1e-5, rtol=1e-5)


def test_class_prompts_with_a_word_context_equal_the_plain_prompts():
    ctx = context_from_words(BACKBONE, "a photo of a")
    assert ctx.shape[0] == 4
    prompts = ClassPrompts(backbone=BACKBONE, classnames=CLASSNAMES, n_ctx=4)
    with torch.no_grad():
        got = prompts(torch.stack([ctx, ctx]))  # two identical contexts
        want = BACKBONE.model.encode_text(BACKBONE.tokenizer([f"a photo of a {c}" for c in CLASSNAMES])).float()
    assert got.shape == (3, 2, want.shape[1])
    torch.testing.assert_close(got[:, 0], want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[:, 1], want, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------- NegLabel


def reference_grouped_score(id_logits: np.ndarray, neg_logits: np.ndarray, groups: int) -> np.ndarray:
    """XueJiang16/NegLabel clip_ood.py grouping, written out: drop M mod g columns, permute them with
    randperm after manual_seed(0) (CPU here), cut into g groups, average the ID softmax mass (T = 1)."""
    m = neg_logits.shape[1]
    kept = m - m % groups
    torch.manual_seed(0)
    perm = torch.randperm(kept).numpy()
    neg = neg_logits[:, :kept][:, perm].reshape(len(neg_logits), groups, -1)
    out = np.zeros(len(id_logits))
    for g in range(groups):
        full = np.concatenate([id_logits, neg[:, g]], axis=1).astype(np.float64)
        p = np.exp(full - full.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        out += p[:, : id_logits.shape[1]].sum(axis=1)
    return out / groups


def test_neglabel_outputs_and_score_follow_the_reference():
    m = build("neglabel")
    assert len(m.negatives) == 105 + 105 and m.negatives.n_nouns == 105
    x = images(7)
    out = m.predict(FeatureBatch(global_=x))
    f = torch.nn.functional.normalize(x, dim=-1)
    torch.testing.assert_close(out.logits, 100.0 * f @ m.id_text.T)
    torch.testing.assert_close(out.extra["neg_logits"], 100.0 * f @ m.negatives.features.T)
    inputs = ScoreInput(
        logits=out.logits.numpy(), logit_scale=100.0, extra={"neg_logits": out.extra["neg_logits"].numpy()}
    )
    want = reference_grouped_score(inputs.logits, inputs.extra["neg_logits"], 100)
    got = SCORES.get("neglabel")(inputs, {"value": "probability"})
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got.dtype == np.float64
    # the default value is -log(1 - s): the same ordering, so the same metrics
    default = SCORES.get("neglabel")(inputs)
    np.testing.assert_allclose(default, -np.log1p(-want), rtol=1e-6, atol=1e-12)
    assert (np.argsort(default, kind="stable") == np.argsort(want, kind="stable")).all()
    with pytest.raises(OodbenchError, match="at most 210 groups"):
        SCORES.get("neglabel")(inputs, {"groups": 500.0})
    with pytest.raises(OodbenchError, match="whole number"):
        SCORES.get("neglabel")(inputs, {"groups": 2.5})


def test_neglabel_mines_the_farthest_words_and_keeps_class_names_by_default():
    m = build("neglabel")
    c = m.config
    nouns, _ = nl.candidates(vocabulary(exclude=c.excluded_files), limit=700)
    feats = nl.encode_words(BACKBONE, nouns, ["the nice {}"])
    closeness = torch.quantile((feats @ m.id_text.T).double(), 0.95, dim=1)
    want = [nouns[i] for i in torch.sort(closeness, stable=True).indices[:105].tolist()]
    assert list(m.negatives.labels[:105]) == want


def test_pool_is_cached_keyed_and_pinned(tmp_path, monkeypatch):
    first = build("neglabel", cache_dir=tmp_path)
    monkeypatch.setattr("methods.neglabel.mine_negatives", lambda **kw: pytest.fail("mined although cached"))
    again = build("neglabel", cache_dir=tmp_path)
    assert again.negatives.labels == first.negatives.labels
    torch.testing.assert_close(again.negatives.features, first.negatives.features)
    monkeypatch.undo()
    other = build("neglabel", cache_dir=tmp_path, ratio=0.1)  # another setting: another entry
    assert len(other.negatives) == 70 + 70
    assert len(list((tmp_path / nl.CACHE_FOLDER).iterdir())) == 2
    # a garbled entry is mined again with a warning
    entries = (tmp_path / nl.CACHE_FOLDER).iterdir()
    entry = next(p for p in entries if len(json.loads((p / "labels.json").read_text())["labels"]) == 210)
    (entry / "features.npy").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable"):
        rebuilt = build("neglabel", cache_dir=tmp_path)
    assert rebuilt.negatives.labels == first.negatives.labels
    # the pin
    build("neglabel", negatives_sha256=first.negatives.sha256)
    with pytest.raises(OodbenchError, match="pins negatives_sha256"):
        build("neglabel", negatives_sha256="0" * 64)
    assert first.negatives.sha256 == nl.labels_sha256(first.negatives.labels)


# ---------------------------------------------------------------------------------------------------- CSP


def test_csp_pool_is_conjugated_phrases_and_respects_the_cap():
    m = build("csp")
    adjectives = m.negatives.labels[m.negatives.n_nouns :]
    superclasses = {"environment", "space", "object", "scene", "place", "item", "area", "view", "thing", "pattern",
                    "structure", "landscape", "vista", "creature"}  # fmt: skip
    assert adjectives and all(a.rsplit(" ", 1)[1] in superclasses for a in adjectives)
    assert (m.negatives.features @ m.id_text.T).max() <= 0.95 + 1e-6
    assert len(m.negatives) == int(0.15 * 700) * 2
    assert "neglabel" in [s for s in SCORES.names() if SCORES.get(s).applies_to(METHODS.get("csp").provides)]


# ---------------------------------------------------------------------------------------------------- AdaNeg


def test_adaneg_memory_adapts_along_the_stream_and_starts_fresh():
    m = build("adaneg", count=300, threshold=0.5, gap=0.0)  # gap 0: every image is stored somewhere
    x1, x2 = images(16, seed=1), images(16, seed=2)
    out1 = m.predict(FeatureBatch(global_=x1))
    filled = m.state.filled.clone()
    assert int(filled.sum()) == len(filled) + 16  # each image went into one slot
    out2 = m.predict(FeatureBatch(global_=x2))
    assert int(m.state.filled.sum()) > int(filled.sum())
    fresh = build("adaneg", count=300, threshold=0.5, gap=0.0)
    assert int(fresh.state.filled.sum()) == len(filled)  # a new run's memory is empty
    # the score equals the building block's float64 score, through the float32 extras
    c, n_id = m.config, len(CLASSNAMES)
    f = torch.nn.functional.normalize(x2, dim=-1)
    vanilla = 100.0 * f @ m.state.text_features.T
    adapted = adaneg_logits(state=m.state, image_features=f, logit_scale=100.0)
    want = reference_adaneg_score(
        vanilla_logits=vanilla, adapted_logits=adapted, num_classes=n_id, groups=c.groups, permutation=m.permutation
    ).numpy()
    extra = {k: v.float().numpy() for k, v in out2.extra.items()}
    inputs = ScoreInput(logits=out2.logits.numpy(), logit_scale=100.0, extra=extra)
    got = SCORES.get("adaneg")(inputs, {"value": "probability"})
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    default = SCORES.get("adaneg")(inputs)  # -log(1 - c / (1 + lambda)), the same ordering
    np.testing.assert_allclose(default, -np.log1p(-want / 1.1), rtol=1e-5, atol=1e-9)
    assert out1.logits.shape == (16, n_id)


def test_neglabel_default_value_keeps_id_images_apart_in_float32():
    """Two confident ID images whose score s rounds to 1.0 in float32 (the per-sample scores file) keep
    distinct, correctly ordered default values."""
    inputs = ScoreInput(
        logits=np.array([[20.0, 0.0], [21.0, 0.0]]), logit_scale=100.0, extra={"neg_logits": np.zeros((2, 200))}
    )
    s = SCORES.get("neglabel")(inputs, {"value": "probability"})
    v = SCORES.get("neglabel")(inputs)
    assert s[1] > s[0] and np.float32(s[0]) == np.float32(s[1])
    assert np.float32(v[1]) > np.float32(v[0])


def test_adaneg_extras_keep_id_scores_apart_in_float32():
    """Scores within 1e-9 of 1 collapse in float32; their log OOD masses do not."""
    id_logits = torch.tensor([[20.0, 0.0], [21.0, 0.0]], dtype=torch.float64)
    neg = torch.zeros(2, 10, dtype=torch.float64)
    s = grouped_id_probability(id_logits=id_logits, neg_logits=neg, groups=5)
    u = grouped_log_ood_mass(id_logits=id_logits, neg_logits=neg, groups=5)
    assert float(s[0]) != float(s[1]) and np.float32(s[0]) == np.float32(s[1])
    back = -np.expm1(u.float().numpy().astype(np.float64))
    assert back[1] > back[0]
    np.testing.assert_allclose(back, s.numpy(), rtol=1e-12)


# ---------------------------------------------------------------------------------------------------- NegPrompt


def test_negprompt_score_is_the_positive_msp_over_all_prompts():
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(size=(6, 3)), rng.normal(size=(6, 6))  # cosines; 3 classes x 2 negatives
    scale = 12.0
    got = SCORES.get("negprompt")(
        ScoreInput(logits=scale * pos, logit_scale=scale, extra={"neg_prompt_logits": scale * neg})
    )
    # core/test_clip.py: softmax over the interleaved [pos_c, neg_c1, neg_c2] cosines, max over positives
    inter = np.concatenate([pos[:, :, None], neg.reshape(6, 3, 2)], axis=2).reshape(6, -1)
    p = np.exp(inter) / np.exp(inter).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got, p.reshape(6, 3, 3)[:, :, 0].max(axis=1), rtol=1e-12)


def test_negprompt_learning_rate_follows_torch_cosine_annealing_stepped_per_batch_and_epoch():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 50)
    step = 0
    for _ in range(40):  # 3 batches per epoch, then the extra epoch step, as osr_nega_prompt.py runs it
        for _ in range(3):
            assert opt.param_groups[0]["lr"] == pytest.approx(cosine_rate(step, base=0.1, t_max=50), abs=1e-12)
            opt.step()
            sched.step()
            step += 1
        sched.step()
        step += 1


def test_negprompt_trains_negatives_apart_and_away_from_the_positive():
    cls = METHODS.get("negprompt")
    m = cls(config=make_config(cls, {"epochs": 3, "negative_epochs": 30}), context=context())
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat_interleave(4)
    text = torch.nn.functional.normalize(BACKBONE.encode_text([f"a photo of a {c}" for c in CLASSNAMES]), dim=-1)
    g = text[y] * 3 + 0.3 * torch.randn(len(y), text.shape[1], generator=gen)
    data = FitData(train=FeatureBatch(global_=g), labels=y, val=FeatureBatch(global_=g[:0]), val_labels=y[:0], shots=4)
    with torch.enable_grad():
        m.fit(data)
    pos, neg = m.text
    neg = neg.reshape(3, 2, -1)
    assert not torch.allclose(neg[:, 0], neg[:, 1])  # the noise grew into two different negatives
    assert (torch.einsum("cd,ckd->ck", pos, neg) < 1 - 1e-4).all()  # negatives left their positive
    assert m.positive.requires_grad is False


# ---------------------------------------------------------------------------------------------------- GalLoP


def test_topk_reduce_averages_each_prompts_own_top_patches():
    local = torch.arange(2 * 6 * 3 * 2, dtype=torch.float64).reshape(2, 6, 3, 2).flip(1)  # patch 0 highest
    got = topk_reduce(local, (2, 4))
    torch.testing.assert_close(got[..., 0], local[:, :2, :, 0].mean(dim=1))
    torch.testing.assert_close(got[..., 1], local[:, :4, :, 1].mean(dim=1))
    torch.testing.assert_close(topk_reduce(local, (100,))[..., 0], local[..., 0].mean(dim=1))  # k capped at P


def test_gallop_starts_as_global_and_local_clip_and_its_patches_are_projected_locals():
    cls = METHODS.get("gallop")
    m = cls(config=make_config(cls, {}), context=context())
    tokens = torch.randn(2, 4, m.local_proj.weight.shape[0], generator=torch.Generator().manual_seed(3))
    proj = BACKBONE.model.visual.proj
    torch.testing.assert_close(m.patch_features(tokens), torch.nn.functional.normalize(tokens @ proj, dim=-1))
    glob, loc = m.text_features()
    want = torch.nn.functional.normalize(
        BACKBONE.model.encode_text(BACKBONE.tokenizer([f"A photo of a {c}" for c in CLASSNAMES])).float(), dim=-1
    )
    for t in (glob, loc):
        assert t.shape == (3, 4, want.shape[1])
        torch.testing.assert_close(t[:, 2], want, atol=1e-5, rtol=1e-5)


def test_gallop_local_width_kind_is_local_before_the_projection():
    from benchmark.encoders import encode_local, encode_local_width

    images = torch.randn(2, 3, 14, 14, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        wide = encode_local_width(BACKBONE, images)
        torch.testing.assert_close(wide @ BACKBONE.model.visual.proj, encode_local(BACKBONE, images))
    assert wide.shape == (2, 4, BACKBONE.model.visual.proj.shape[0])


def test_gallop_fit_needs_patch_tokens():
    cls = METHODS.get("gallop")
    m = cls(config=make_config(cls, {"epochs": 1}), context=context())
    y = torch.arange(3)
    data = FitData(
        train=FeatureBatch(global_=images(3)), labels=y, val=FeatureBatch(global_=images(0)), val_labels=y[:0], shots=1
    )
    with pytest.raises(OodbenchError, match="local_width"):
        m.fit(data)


def test_gallop_rejects_a_topk_per_prompt_mismatch():
    cls = METHODS.get("gallop")
    with pytest.raises(OodbenchError, match="topk"):
        cls(config=make_config(cls, {"topk": [5, 10]}), context=context())


def test_cosine_rate_is_periodic_past_t_max():
    assert cosine_rate(0, base=1.0, t_max=50) == 1.0
    assert cosine_rate(50, base=1.0, t_max=50) == pytest.approx(0.0, abs=1e-15)
    assert cosine_rate(100, base=1.0, t_max=50) == pytest.approx(1.0)
    assert cosine_rate(25, base=1.0, t_max=50) == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))


def test_no_warning_when_the_cache_folder_is_missing(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build("neglabel", cache_dir=tmp_path / "new")
