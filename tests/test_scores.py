"""Scores on hand-computed outputs, GL-MCM included."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark.errors import OodbenchError
from methods.base import MethodOutput
from methods.scores import SCORES, mcm_from_similarities


def test_mcm_reads_cosine_similarities_not_scaled_logits():
    sims = torch.tensor([[0.3, 0.1]])
    out = MethodOutput(logits=100 * sims, logit_scale=100.0)
    expected = math.exp(0.3) / (math.exp(0.3) + math.exp(0.1))
    assert float(SCORES.get("mcm")(out)[0]) == pytest.approx(expected, rel=1e-6)
    assert float(SCORES.get("msp")(out)[0]) == pytest.approx(1 / (1 + math.exp(-20)), rel=1e-6)


def test_gl_mcm_is_global_mcm_plus_best_patch_mcm():
    sims = torch.tensor([[0.3, 0.1]])
    local = torch.tensor([[[0.0, 0.0], [0.5, 0.1], [0.2, 0.4]]])  # three patches
    out = MethodOutput(logits=10 * sims, logit_scale=10.0, local_logits=10 * local)
    g = math.exp(0.3) / (math.exp(0.3) + math.exp(0.1))
    best_patch = math.exp(0.5) / (math.exp(0.5) + math.exp(0.1))
    assert float(SCORES.get("gl_mcm")(out)[0]) == pytest.approx(g + best_patch, rel=1e-6)


def test_gl_mcm_rewards_one_confident_patch():
    """GL-MCM exists because ID objects may fill a small region: one confident patch raises the score."""
    g = torch.zeros(1, 3)
    flat = torch.zeros(1, 4, 3)
    one = flat.clone()
    one[0, 2] = torch.tensor([1.0, -1.0, -1.0])
    s = SCORES.get("gl_mcm")
    assert float(s(MethodOutput(g, 1.0, one))[0]) > float(s(MethodOutput(g, 1.0, flat))[0])


def test_gl_mcm_without_patch_logits_is_a_clear_error():
    assert SCORES.get("gl_mcm").needs_local
    with pytest.raises(OodbenchError, match="local_logits"):
        SCORES.get("gl_mcm")(MethodOutput(logits=torch.zeros(2, 3), logit_scale=1.0))


def test_mcm_helper_is_max_softmax_over_the_last_dim():
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(mcm_from_similarities(x), torch.softmax(x, -1).max(-1).values)
