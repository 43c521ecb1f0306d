"""Negative-label building blocks: mining, NegLabel's grouped score, CSP's pool, AdaNeg's memory.

Hand-computed cases on tiny inputs, plus comparisons with literal re-implementations of the reference loops.
"""

from __future__ import annotations

import math
import random

import pytest
import torch

from benchmark.errors import OodbenchError
from methods.shared import negatives as neg


def unit(*xs: float) -> torch.Tensor:
    v = torch.tensor(xs, dtype=torch.float64)
    return v / v.norm()


E = torch.eye(4, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------------- quantiles


def test_row_quantile_linear_matches_torch_quantile_and_hand_values():
    row = torch.tensor([[0.1, 0.4, 0.2, 0.3, 0.5]])
    assert neg.row_quantile(row, q=0.5).item() == pytest.approx(0.3)
    assert neg.row_quantile(row, q=0.95).item() == pytest.approx(0.48)  # 0.4 + 0.8 * (0.5 - 0.4)
    x = torch.randn(50, 37, generator=torch.Generator().manual_seed(0))
    for q in (0.0, 0.3, 0.95, 1.0):
        torch.testing.assert_close(neg.row_quantile(x, q=q, chunk=7), torch.quantile(x.double(), q, dim=1))


def test_row_quantile_index_rule_takes_sorted_entry_int_cq():
    row = torch.tensor([[0.1, 0.4, 0.2, 0.3, 0.5]])
    assert neg.row_quantile(row, q=0.95, rule="index").item() == pytest.approx(0.5)  # index int(4.75) = 4
    assert neg.row_quantile(row, q=0.5, rule="index").item() == pytest.approx(0.3)  # index 2
    with pytest.raises(OodbenchError, match="rule"):
        neg.row_quantile(row, q=0.5, rule="nearest")
    with pytest.raises(OodbenchError, match=r"\[0, 1\]"):
        neg.row_quantile(row, q=1.5)


# ---------------------------------------------------------------------------------------------------- mining

ID = torch.stack([E[0], E[1]])  # two ID labels
NOUNS = torch.stack([E[0], E[2], unit(1, 0, 1, 0), -E[0]])  # max-sims to ID: 1, 0, 0.707, 0; min-sims 0, 0, 0, -1
ADJS = torch.stack([unit(1, 1, 0, 0), E[3]])  # max-sims 0.707, 0


def test_mining_picks_farthest_by_percentile_with_stable_ties():
    sel = neg.mine_negatives(id_features=ID, noun_features=NOUNS, adjective_features=ADJS, ratio=0.5, percentile=1.0)
    assert sel.nouns.tolist() == [1, 3]  # the two at max-sim 0, in candidate order
    assert sel.adjectives.tolist() == [1]  # int(2 * 0.5) = 1
    assert len(sel) == 3
    low = neg.mine_negatives(id_features=ID, noun_features=NOUNS, adjective_features=ADJS, ratio=0.5, percentile=0.0)
    assert low.nouns.tolist() == [3, 0]  # min-sims -1 first, then the 0s in index order


def test_mining_ratio_floors_per_part_of_speech():
    sel = neg.mine_negatives(id_features=ID, noun_features=NOUNS, adjective_features=ADJS, ratio=0.3)
    assert (len(sel.nouns), len(sel.adjectives)) == (1, 0)  # int(4 * 0.3) = 1, int(2 * 0.3) = 0


def test_mining_csp_cap_never_picks_labels_too_close_to_an_id_label():
    # percentile 0 (min) would rank E[0] (sims 1, 0) first among ties; its max-sim 1 > 0.95 sends it last
    sel = neg.mine_negatives(
        id_features=ID, noun_features=NOUNS, adjective_features=ADJS, ratio=1.0, percentile=0.0, exclude_above=0.95
    )
    assert sel.nouns.tolist() == [3, 1, 2, 0]


def test_mining_count_splits_in_proportion_to_pool_sizes():
    sel = neg.mine_negatives(id_features=ID, noun_features=NOUNS, adjective_features=ADJS, ratio=None, count=3)
    assert (len(sel.nouns), len(sel.adjectives)) == (2, 1)  # int(3 * 2/6) = 1 adjective, 2 nouns


def test_mining_is_deterministic_on_random_embeddings():
    g = torch.Generator().manual_seed(1)
    idf, nf, af = (torch.nn.functional.normalize(torch.randn(n, 16, generator=g), dim=1) for n in (10, 300, 120))
    a = neg.mine_negatives(id_features=idf, noun_features=nf, adjective_features=af)
    b = neg.mine_negatives(id_features=idf, noun_features=nf, adjective_features=af)
    assert torch.equal(a.nouns, b.nouns) and torch.equal(a.adjectives, b.adjectives)
    assert (len(a.nouns), len(a.adjectives)) == (45, 18)
    # the selected nouns are exactly the 45 lowest 95th-percentile similarities
    q = torch.quantile((nf @ idf.T).double(), 0.95, dim=1)
    assert set(a.nouns.tolist()) == set(torch.argsort(q)[:45].tolist())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ratio": 0.15, "count": 3}, "exactly one"),
        ({"ratio": None, "count": None}, "exactly one"),
        ({"ratio": 0.0}, r"\(0, 1\]"),
        ({"ratio": None, "count": 7}, "1..6"),
        ({"ratio": 0.1}, "selects no label"),
    ],
)
def test_mining_bad_settings(kwargs, match):
    with pytest.raises(OodbenchError, match=match):
        neg.mine_negatives(id_features=ID, noun_features=NOUNS, adjective_features=ADJS, **kwargs)


def test_mining_bad_inputs():
    with pytest.raises(OodbenchError, match="features per row"):
        neg.mine_negatives(id_features=ID, noun_features=NOUNS[:, :3], adjective_features=ADJS)
    with pytest.raises(OodbenchError, match="empty"):
        neg.mine_negatives(id_features=ID, noun_features=NOUNS[:0], adjective_features=ADJS)
    with pytest.raises(OodbenchError, match="finite"):
        neg.mine_negatives(id_features=ID * float("nan"), noun_features=NOUNS, adjective_features=ADJS)
    with pytest.raises(OodbenchError, match="2-D"):
        neg.mine_negatives(id_features=ID[0], noun_features=NOUNS, adjective_features=ADJS)


# ---------------------------------------------------------------------------------------------------- NegLabel score

ID_LOGITS = torch.tensor([[1.0, 0.0]])
NEG_LOGITS = torch.tensor([[0.0, 1.0, 2.0, 3.0, 5.0]])
e = math.e


def test_ungrouped_score_is_softmax_mass_on_id_labels():
    s = neg.grouped_id_probability(id_logits=ID_LOGITS, neg_logits=NEG_LOGITS)
    assert s.item() == pytest.approx((e + 1) / (e + 1 + 1 + e + e**2 + e**3 + e**5))


def test_grouping_drops_trailing_columns_then_averages_groups():
    s = neg.grouped_id_probability(id_logits=ID_LOGITS, neg_logits=NEG_LOGITS, groups=2)  # column 5 dropped
    expected = ((e + 1) / (e + 1 + 1 + e) + (e + 1) / (e + 1 + e**2 + e**3)) / 2
    assert s.item() == pytest.approx(expected)


def test_grouping_with_permutation_and_temperature():
    s = neg.grouped_id_probability(
        id_logits=ID_LOGITS, neg_logits=NEG_LOGITS, groups=2, permutation=torch.tensor([2, 0, 3, 1]), temperature=2.0
    )
    a, h = math.exp(0.5), math.exp  # logits / 2
    expected = ((a + 1) / (a + 1 + h(1.0) + 1) + (a + 1) / (a + 1 + h(1.5) + h(0.5))) / 2  # groups {2, 0}, {3, 1}
    assert s.item() == pytest.approx(expected)


def test_grouped_score_matches_the_reference_loop():
    g = torch.Generator().manual_seed(2)
    pos, negl = 100 * torch.rand(6, 20, generator=g), 100 * torch.rand(6, 103, generator=g)
    perm = neg.group_permutation(size=100, seed=0)
    # the reference's loop: drop trailing columns, permute, reshape, softmax per group, sum ID part, mean
    kept = negl[:, :100][:, perm].reshape(6, 10, 10)
    ref = torch.stack([torch.cat([pos, kept[:, i]], 1).softmax(-1)[:, :20].sum(-1) for i in range(10)], -1).mean(-1)
    ours = neg.grouped_id_probability(id_logits=pos, neg_logits=negl, groups=10, permutation=perm)
    torch.testing.assert_close(ours, ref.double(), rtol=1e-5, atol=1e-6)
    assert ours.dtype == torch.float64


def test_group_permutation_is_the_cpu_randperm_after_manual_seed():
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(0)
        reference = torch.randperm(1000)  # AdaNeg's draw (ttaprompt_postprocessor.py)
    finally:
        torch.random.set_rng_state(state)
    assert torch.equal(neg.group_permutation(size=1000, seed=0), reference)
    assert not torch.equal(neg.group_permutation(size=1000, seed=1), reference)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"groups": 6}, "1..5"),
        ({"groups": 0}, "1..5"),
        ({"groups": 2, "permutation": torch.tensor([0, 1, 2, 3, 4])}, r"range\(4\)"),
        ({"groups": 2, "permutation": torch.tensor([0, 0, 1, 2])}, r"range\(4\)"),
        ({"temperature": 0.0}, "> 0"),
    ],
)
def test_grouped_score_bad_settings(kwargs, match):
    with pytest.raises(OodbenchError, match=match):
        neg.grouped_id_probability(id_logits=ID_LOGITS, neg_logits=NEG_LOGITS, **kwargs)


def test_grouped_score_rows_must_agree():
    with pytest.raises(OodbenchError, match="rows"):
        neg.grouped_id_probability(id_logits=ID_LOGITS.repeat(2, 1), neg_logits=NEG_LOGITS)


# ---------------------------------------------------------------------------------------------------- prompt pools


def test_neglabel_prompts():
    nouns, adjs = neg.neglabel_prompts(nouns=["fresnel lens"], adjectives=["crimson"])
    assert nouns == ["the nice fresnel lens"] and adjs == ["This is a crimson photo"]


def test_conjugated_phrases_follow_the_references_random_choice_sequence():
    words = ["red", "quiet", "wooden", "ancient", "bright", "soft", "tall"]
    superclasses = neg.prompts("csp")["superclass"]
    state = random.getstate()
    try:
        random.seed(0)  # the reference: random.seed(seed), then one random.choice per adjective read
        reference = [random.choice(superclasses).format(w) for w in words]
    finally:
        random.setstate(state)
    ours = neg.conjugated_phrases(adjectives=words, seed=0)
    assert ours == reference
    assert all(
        p.startswith(w + " ") and p.split(" ", 1)[1] in {s[3:] for s in superclasses}
        for p, w in zip(ours, words, strict=True)
    )
    assert neg.conjugated_phrases(adjectives=words, seed=0) == ours
    assert neg.conjugated_phrases(adjectives=words, seed=1) != ours


def test_conjugated_phrases_reject_bad_templates():
    with pytest.raises(OodbenchError, match="exactly one"):
        neg.conjugated_phrases(adjectives=["red"], superclasses=["scene"])


def test_csp_prompts_shape():
    nouns, adjs = neg.csp_prompts(nouns=["lens", "kite"], adjectives=["red"], seed=0)
    assert [len(p) for p in nouns] == [8, 8] and nouns[0][-1] == "the nice lens"
    phrase = neg.conjugated_phrases(adjectives=["red"], seed=0)[0]
    assert adjs == [[phrase, f"a nice photo of {phrase}", f"a good photo of {phrase}", f"a close-up photo of {phrase}"]]


def test_prompts_unknown_method():
    with pytest.raises(OodbenchError, match="neglabel"):
        neg.prompts("negprompt")


def test_average_prompt_features_raw_vs_normalized_first():
    f = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])  # one word, two prompts
    torch.testing.assert_close(neg.average_prompt_features(f, normalize_first=False), unit(2, 1).float()[None])
    torch.testing.assert_close(neg.average_prompt_features(f, normalize_first=True), unit(1, 1).float()[None])
    with pytest.raises(OodbenchError, match="words, prompts, dim"):
        neg.average_prompt_features(f[0], normalize_first=True)


# ---------------------------------------------------------------------------------------------------- AdaNeg

TEXT = E.clone()  # labels: ID classes e1, e2; negatives e3, e4
KW = {"logit_scale": 10.0, "groups": 1}


def test_adaneg_update_routes_confident_images_and_skips_uncertain_ones():
    state = neg.adaneg_init(text_features=TEXT, num_classes=2, memory_length=3)
    batch = torch.stack([E[0], E[2], unit(1, 0, 1, 0)])  # clearly ID, clearly negative, score exactly 0.5
    new = neg.adaneg_update(state=state, image_features=batch, **KW)
    assert new.filled.tolist() == [2, 1, 2, 1]
    torch.testing.assert_close(new.features[0, 1], E[0])
    torch.testing.assert_close(new.features[2, 1], E[2])
    p = torch.softmax(torch.tensor([10.0, 0.0], dtype=torch.float64), 0)
    assert new.entropy[0, 1].item() == pytest.approx(-(p * torch.log(p + 1e-8)).sum().item())
    # the input state is untouched
    assert state.filled.tolist() == [1, 1, 1, 1] and state.features[:, 1:].abs().sum() == 0


def test_adaneg_full_row_replaces_highest_entropy_and_skips_higher_ones():
    state = neg.adaneg_init(text_features=TEXT, num_classes=2, memory_length=3)  # full after 2 images
    near = [unit(1, eps, 0, 0) for eps in (0.3, 0.1, 0.2, 0.5)]  # all predicted class 0; entropy grows with eps
    new = neg.adaneg_update(state=state, image_features=torch.stack(near), **KW)
    # 0.3 -> slot 1, 0.1 -> slot 2 (full), 0.2 replaces 0.3 (highest entropy), 0.5 is above both: skipped
    torch.testing.assert_close(new.features[0, 1], near[2])
    torch.testing.assert_close(new.features[0, 2], near[1])
    torch.testing.assert_close(new.features[0, 0], E[0])
    assert new.filled[0].item() == 3


def test_adaneg_update_matches_a_literal_reference_loop():
    g = torch.Generator().manual_seed(3)
    text = torch.nn.functional.normalize(torch.randn(12, 8, generator=g, dtype=torch.float64), dim=1)
    imgs = torch.nn.functional.normalize(torch.randn(40, 8, generator=g, dtype=torch.float64), dim=1)
    imgs[:20] = torch.nn.functional.normalize(imgs[:20] + 3 * text[torch.arange(20) % 4], dim=1)  # near ID 0..3
    imgs[20:] = torch.nn.functional.normalize(imgs[20:] + 3 * text[4 + torch.arange(20) % 8], dim=1)  # near negs
    c, size, scale = 4, 4, 30.0
    # reference layout: 1 + memleng slots, counters from 1, full at memleng (ttaprompt_postprocessor.py)
    mem = torch.cat([text[:, None], torch.zeros(12, size, 8, dtype=torch.float64)], 1)
    ent = torch.zeros(12, size + 1, dtype=torch.float64)
    idx = torch.ones(12)
    logits = scale * imgs @ text.T
    conf = neg.grouped_id_probability(id_logits=logits[:, :c], neg_logits=logits[:, c:], groups=1)
    for lo, hi, active in ((0, c, conf > 0.75), (c, 12, conf < 0.25)):
        prob = torch.softmax(logits[:, lo:hi], 1)
        for i in range(40):
            if not active[i]:
                continue
            cat = int(logits[i, lo:hi].argmax()) + lo
            h = -(prob[i] * torch.log(prob[i] + 1e-8)).sum()
            if idx[cat] == size:
                if (h < ent[cat]).sum() == 0:
                    continue
                j = torch.sort(ent[cat], stable=True).indices[-1]
                mem[cat, j], ent[cat, j] = imgs[i], h
            else:
                mem[cat, int(idx[cat])], ent[cat, int(idx[cat])] = imgs[i], h
                idx[cat] += 1
    state = neg.adaneg_init(text_features=text, num_classes=c, memory_length=size)
    ours = neg.adaneg_update(state=state, image_features=imgs, logit_scale=scale, groups=1)
    torch.testing.assert_close(ours.features, mem)
    torch.testing.assert_close(ours.entropy, ent)
    assert (ours.filled[:c] == size).all() and (ours.filled[c:] > 1).sum() >= 4  # ID rows full, negatives written
    ref_proto = torch.nn.functional.normalize(mem.mean(1), dim=1)
    torch.testing.assert_close(neg.adaneg_logits(state=ours, image_features=imgs), 100 * imgs @ ref_proto.T)


def test_adaneg_logits_task_and_sample_adaptive_by_hand():
    state = neg.adaneg_init(text_features=TEXT, num_classes=2, memory_length=3)
    state.features[0, 1] = E[1]  # class 0 remembers an image along e2 (slot 2, 3 empty)
    img = E[0][None]
    task = neg.adaneg_logits(state=state, image_features=img, logit_scale=1.0)
    assert task[0, 0].item() == pytest.approx(1 / math.sqrt(2))  # normalize(e1 + e2) . e1
    sample = neg.adaneg_logits(state=state, image_features=img, logit_scale=1.0, sample_adaptive=True, beta=5.0)
    w = math.exp(-5.0)  # slot along e2 has cosine 0 with the image: weight exp(-5)
    assert sample[0, 0].item() == pytest.approx(1 / math.sqrt(1 + w * w))
    assert sample[0, 1].item() == pytest.approx(0.0, abs=1e-12)


def test_adaneg_sample_adaptive_matches_explicit_weighted_sum():
    g = torch.Generator().manual_seed(4)
    feats = torch.randn(5, 4, 6, generator=g, dtype=torch.float64)  # 5 labels, 4 slots
    feats[:, 3] = 0  # an empty slot
    state = neg.AdaNegState(
        features=feats,
        entropy=torch.zeros(5, 4, dtype=torch.float64),
        filled=torch.ones(5, dtype=torch.long),
        num_classes=2,
    )
    imgs = torch.nn.functional.normalize(torch.randn(7, 6, generator=g, dtype=torch.float64), dim=1)
    ours = neg.adaneg_logits(state=state, image_features=imgs, logit_scale=100.0, sample_adaptive=True, beta=5.0)
    for b in range(7):
        w = torch.exp(-5.0 * (1 - feats @ imgs[b]))  # [5, 4]
        proto = torch.nn.functional.normalize((w[..., None] * feats).sum(1), dim=1)
        torch.testing.assert_close(ours[b], 100 * proto @ imgs[b])


def test_adaneg_score_and_prediction():
    vanilla = torch.tensor([[2.0, 0.0, 1.0, 0.0]])
    adapted = torch.tensor([[0.0, 3.0, 0.0, 1.0]])
    s = neg.adaneg_score(vanilla_logits=vanilla, adapted_logits=adapted, num_classes=2, groups=1, lambda_=0.1)
    van = (e**2 + 1) / (e**2 + 1 + e + 1)
    ada = (1 + e**3) / (1 + e**3 + 1 + e)
    assert s.item() == pytest.approx(ada + 0.1 * van)
    assert neg.adaneg_prediction(vanilla_logits=vanilla, adapted_logits=adapted, num_classes=2).tolist() == [0]
    assert neg.adaneg_prediction(
        vanilla_logits=vanilla, adapted_logits=adapted, num_classes=2, lambda_=10
    ).tolist() == [1]
    with pytest.raises(OodbenchError, match="differ"):
        neg.adaneg_score(vanilla_logits=vanilla, adapted_logits=adapted[:, :3], num_classes=2)


def test_adaneg_bad_inputs():
    with pytest.raises(OodbenchError, match="num_classes"):
        neg.adaneg_init(text_features=TEXT, num_classes=4)
    with pytest.raises(OodbenchError, match="memory_length"):
        neg.adaneg_init(text_features=TEXT, num_classes=2, memory_length=1)
    state = neg.adaneg_init(text_features=TEXT, num_classes=2)
    with pytest.raises(OodbenchError, match="features per row"):
        neg.adaneg_update(state=state, image_features=torch.ones(1, 3, dtype=torch.float64))
