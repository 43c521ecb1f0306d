"""Scores on hand-computed outputs, parameters, GL-MCM's patch reduction, and parsing score variants."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from benchmark.errors import OodbenchError
from methods.scores import SCORES, ScoreInput, parse_score, score_label, score_spec, spec_from_row

OWN_SCORES = ("mcm", "msp", "energy", "max_logit", "entropy", "gl_mcm")


def out(sims, scale, **kw) -> ScoreInput:
    sims = np.asarray(sims, dtype=np.float32)
    return ScoreInput(logits=scale * sims, logit_scale=scale, **kw)


def test_mcm_reads_cosine_similarities_not_scaled_logits():
    o = out([[0.3, 0.1]], 100.0)
    expected = math.exp(0.3) / (math.exp(0.3) + math.exp(0.1))
    assert float(SCORES.get("mcm")(o)[0]) == pytest.approx(expected, rel=1e-6)
    assert float(SCORES.get("msp")(o)[0]) == pytest.approx(1 / (1 + math.exp(-20)), rel=1e-5)


def test_energy_reads_cosines_and_its_temperature_recovers_the_logit_version():
    o = out([[0.3, 0.1]], 100.0)
    energy = SCORES.get("energy")
    assert float(energy(o)[0]) == pytest.approx(math.log(math.exp(0.3) + math.exp(0.1)), rel=1e-6)
    t = 0.01  # T = 1 / logit_scale: the energy of the logits, divided by the logit scale
    assert float(energy(o, {"T": t})[0]) == pytest.approx(t * math.log(math.exp(0.3 / t) + math.exp(0.1 / t)), rel=1e-6)
    assert float(energy(o, {"T": t})[0]) == pytest.approx(math.log(math.exp(30) + math.exp(10)) / 100, rel=1e-6)
    assert float(SCORES.get("mcm")(o, {"T": 0.5})[0]) == pytest.approx(
        math.exp(0.6) / (math.exp(0.6) + math.exp(0.2)), rel=1e-6
    )
    assert float(SCORES.get("max_logit")(o)[0]) == pytest.approx(0.3, rel=1e-6)


# ---- every score against the reference formula, written again from the cited lines, on random inputs


def _reference_scores(cos: np.ndarray, logits: np.ndarray, local_cos: np.ndarray, T: float, lam: float) -> dict:  # noqa: N803
    """The reference code's formulas, with scipy where it used it. MCM (deeplearning-wisc/MCM
    utils/detection_util.py:L232-248) stores a score where lower = more ID and negates it before the metrics
    (L259); the values here are those negated scores. GL-MCM: AtsuMiyai/GL-MCM utils/detection_util.py:L119-133."""
    from scipy.special import logsumexp, softmax
    from scipy.stats import entropy

    smax = softmax(cos / T, axis=1)
    stored = {
        "mcm": -np.max(smax, axis=1),
        "energy": -(T * logsumexp(cos / T, axis=1)),
        "entropy": entropy(smax, axis=1),
        "max_logit": -np.max(cos, axis=1),
        "gl_mcm": -np.max(smax, axis=1) + lam * -np.max(softmax(local_cos / T, axis=-1), axis=(1, 2)),
    }
    ref = {k: -v for k, v in stored.items()}
    ref["msp"] = softmax(logits / T, axis=1).max(axis=1)  # Hendrycks & Gimpel on the classifier's logits
    return ref


@pytest.mark.parametrize("T, lam", [(1.0, 1.0), (0.5, 0.5), (0.01, 2.0)])  # noqa: N803
def test_every_score_equals_the_reference_formula_on_random_inputs(T, lam):  # noqa: N803
    rng = np.random.default_rng(7)
    n, c, p, scale = 50, 12, 9, 100.0
    cos = rng.uniform(-0.2, 0.45, size=(n, c)).astype(np.float32)  # CLIP-like cosine similarities
    local_cos = rng.uniform(-0.2, 0.45, size=(n, p, c)).astype(np.float32)
    ref = _reference_scores(
        cos.astype(np.float64), scale * cos.astype(np.float64), local_cos.astype(np.float64), T, lam
    )
    assert set(ref) == set(OWN_SCORES)  # the scores of methods/scores.py (methods' own scores live with them)
    for name in OWN_SCORES:
        spec = SCORES.get(name)
        params = {k: v for k, v in {"T": T, "lambda_local": lam}.items() if k in spec.params}
        local = None
        if spec.local is not None:
            local = spec.local(torch.from_numpy(scale * local_cos), scale, **params).double().numpy()
        values = spec(ScoreInput(logits=scale * cos, logit_scale=scale, local=local), params)
        np.testing.assert_allclose(values, ref[name], rtol=1e-4, atol=1e-6, err_msg=name)


def test_score_parameters_are_the_tables():
    assert {n: dict(SCORES.get(n).params) for n in OWN_SCORES} == {
        "mcm": {"T": 1.0},
        "msp": {"T": 1.0},
        "energy": {"T": 1.0},
        "max_logit": {},
        "entropy": {"T": 1.0},
        "gl_mcm": {"T": 1.0, "lambda_local": 1.0},
    }


def test_gl_mcm_is_global_mcm_plus_lambda_times_best_patch_mcm():
    local = torch.tensor([[[0.0, 0.0], [0.5, 0.1], [0.2, 0.4]]]) * 10  # three patches, logit scale 10
    gl = SCORES.get("gl_mcm")
    reduction = gl.local(local, 10.0, T=1.0).numpy()
    best_patch = math.exp(0.5) / (math.exp(0.5) + math.exp(0.1))
    assert float(reduction[0]) == pytest.approx(best_patch, rel=1e-6)
    o = out([[0.3, 0.1]], 10.0, local=reduction)
    g = math.exp(0.3) / (math.exp(0.3) + math.exp(0.1))
    assert float(gl(o, {"T": 1.0, "lambda_local": 1.0})[0]) == pytest.approx(g + best_patch, rel=1e-6)
    assert float(gl(o, {"T": 1.0, "lambda_local": 0.5})[0]) == pytest.approx(g + 0.5 * best_patch, rel=1e-6)


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
    spec = parse_score("gl_mcm:T=0.5:lambda_local=0.5")
    assert spec.config == {"T": 0.5, "lambda_local": 0.5}
    assert json.loads(spec.config_json) == {"T": 0.5, "lambda_local": 0.5}
    assert spec.label == "gl_mcm:T=0.5:lambda_local=0.5"
    assert parse_score("gl_mcm:lambda_local=0.5").label == "gl_mcm:lambda_local=0.5"
    default = parse_score("energy")
    assert default.is_default and default.label == "energy"
    assert spec_from_row("gl_mcm", spec.config_json) == spec
    assert score_label("gl_mcm", spec.config_json) == spec.label
    # a version-1 row whose energy read logits (`on`, a parameter that no longer exists) keeps its raw config
    assert score_label("energy", '{"T":1.0,"on":"logits"}') == 'energy {"T":1.0,"on":"logits"}'
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
