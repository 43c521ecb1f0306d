"""Scores on hand-computed outputs, parameters, GL-MCM's patch reduction, and parsing score variants."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from benchmark.errors import OodbenchError
from methods.scores import SCORES, ScoreInput, parse_score, score_label, score_spec, spec_from_row


def out(sims, scale, **kw) -> ScoreInput:
    sims = np.asarray(sims, dtype=np.float32)
    return ScoreInput(logits=scale * sims, logit_scale=scale, **kw)


def test_mcm_reads_cosine_similarities_not_scaled_logits():
    o = out([[0.3, 0.1]], 100.0)
    expected = math.exp(0.3) / (math.exp(0.3) + math.exp(0.1))
    assert float(SCORES.get("mcm")(o)[0]) == pytest.approx(expected, rel=1e-6)
    assert float(SCORES.get("msp")(o)[0]) == pytest.approx(1 / (1 + math.exp(-20)), rel=1e-5)


def test_temperature_and_input_parameters_change_the_score():
    o = out([[0.3, 0.1]], 100.0)
    energy = SCORES.get("energy")
    on_logits = float(energy(o)[0])
    assert on_logits == pytest.approx(math.log(math.exp(30) + math.exp(10)), rel=1e-6)
    on_cosine = float(energy(o, {"on": "cosine", "T": 1.0})[0])
    assert on_cosine == pytest.approx(math.log(math.exp(0.3) + math.exp(0.1)), rel=1e-6)
    t = 0.01
    assert float(energy(o, {"on": "cosine", "T": t})[0]) == pytest.approx(
        t * math.log(math.exp(0.3 / t) + math.exp(0.1 / t)), rel=1e-6
    )
    assert float(SCORES.get("mcm")(o, {"T": 0.5})[0]) == pytest.approx(
        math.exp(0.6) / (math.exp(0.6) + math.exp(0.2)), rel=1e-6
    )


def test_gl_mcm_is_global_mcm_plus_lambda_times_best_patch_mcm():
    local = torch.tensor([[[0.0, 0.0], [0.5, 0.1], [0.2, 0.4]]]) * 10  # three patches, logit scale 10
    gl = SCORES.get("gl_mcm")
    reduction = gl.local(local, 10.0, T=1.0).numpy()
    best_patch = math.exp(0.5) / (math.exp(0.5) + math.exp(0.1))
    assert float(reduction[0]) == pytest.approx(best_patch, rel=1e-6)
    o = out([[0.3, 0.1]], 10.0, local=reduction)
    g = math.exp(0.3) / (math.exp(0.3) + math.exp(0.1))
    assert float(gl(o, {"T": 1.0, "lam": 1.0})[0]) == pytest.approx(g + best_patch, rel=1e-6)
    assert float(gl(o, {"T": 1.0, "lam": 0.5})[0]) == pytest.approx(g + 0.5 * best_patch, rel=1e-6)


def test_gl_mcm_rewards_one_confident_patch():
    """GL-MCM exists because ID objects may fill a small region: one confident patch raises the score."""
    flat = torch.zeros(1, 4, 3)
    one = flat.clone()
    one[0, 2] = torch.tensor([1.0, -1.0, -1.0])
    gl = SCORES.get("gl_mcm")
    hi = gl(out(np.zeros((1, 3)), 1.0, local=gl.local(one, 1.0, T=1.0).numpy()))
    lo = gl(out(np.zeros((1, 3)), 1.0, local=gl.local(flat, 1.0, T=1.0).numpy()))
    assert float(hi[0]) > float(lo[0])


def test_gl_mcm_without_patch_reduction_is_a_clear_error():
    assert "local" in SCORES.get("gl_mcm").requires
    with pytest.raises(OodbenchError, match="patch-token"):
        SCORES.get("gl_mcm")(out(np.zeros((2, 3)), 1.0))


def test_score_variants_parse_and_label():
    spec = parse_score("energy:T=0.01:on=cosine")
    assert spec.config == {"T": 0.01, "on": "cosine"}
    assert json.loads(spec.config_json) == {"T": 0.01, "on": "cosine"}
    assert spec.label == "energy:T=0.01:on=cosine"
    default = parse_score("energy")
    assert default.is_default and default.label == "energy"
    assert spec_from_row("energy", spec.config_json) == spec
    assert score_label("energy", spec.config_json) == spec.label
    assert score_label("no_such_score", '{"a":1}') == 'no_such_score {"a":1}'


@pytest.mark.parametrize(
    "text, message",
    [
        ("energy:t=0.01", "has no parameter 't'. Did you mean 'T'"),
        ("energy:T=hot", "takes a number"),
        ("energy:T=nan", "finite number"),
        ("energy:T", "parameters are written name:key=value"),
        ("enrgy", "Unknown score 'enrgy'"),
    ],
)
def test_bad_score_variants_are_clear_errors(text, message):
    with pytest.raises(OodbenchError, match=message):
        parse_score(text)


def test_every_score_has_a_spec_with_its_defaults():
    for name in SCORES.names():
        spec = score_spec(name)
        assert spec.config == dict(SCORES.get(name).defaults)
