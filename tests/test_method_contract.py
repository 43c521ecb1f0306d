"""Contract tests over the whole METHODS and SCORES registries: every registered method and score gets
the same checks. Methods run on tiny synthetic features and a tiny randomly initialised open_clip model
(the prompt learners need its text tower), so the whole file takes seconds."""

from __future__ import annotations

import dataclasses
import functools
import json

import numpy as np
import open_clip
import pytest
import torch
from open_clip.tokenizer import SimpleTokenizer

from benchmark.backbones import Backbone
from benchmark.errors import OodbenchError
from methods import METHODS, SCORES, load_methods
from methods.base import (
    FeatureBatch,
    FitData,
    MethodContext,
    MethodOutput,
    canonical_config,
    fits_split,
    make_config,
)
from methods.scores import ScoreInput, score_spec

load_methods()
CLASSNAMES = ["cat", "dog", "bird"]
DIM, PATCHES, VIEWS = 16, 4, 2


def tiny_backbone() -> Backbone:
    torch.manual_seed(0)
    model = (
        open_clip.CLIP(
            embed_dim=DIM,
            vision_cfg=open_clip.model.CLIPVisionCfg(image_size=14, layers=2, width=16, head_width=8, patch_size=7),
            text_cfg=open_clip.model.CLIPTextCfg(context_length=77, vocab_size=49408, width=16, heads=2, layers=1),
        )
        .eval()
        .requires_grad_(False)
    )
    return Backbone(
        name="tiny:random",
        arch="tiny",
        model=model,
        preprocess=None,
        tokenizer=SimpleTokenizer(context_length=77),
        weights_sha256="0" * 64,
        device=torch.device("cpu"),
    )


BACKBONE = tiny_backbone()
TEXT = BACKBONE.encode_text([f"a photo of a {c}." for c in CLASSNAMES])


def classifier(templates: list[str]) -> torch.Tensor:
    """The zero-shot classifier of a template set, as the harness builds it."""
    rows = [BACKBONE.encode_text([t.format(c) for t in templates]).mean(0) for c in CLASSNAMES]
    return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


def context(seed: int = 1) -> MethodContext:
    return MethodContext(
        backbone=BACKBONE,
        classnames=CLASSNAMES,
        text_features=TEXT,
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(seed),
        text_classifier=classifier,
    )


def features(labels: torch.Tensor, gen: torch.Generator, *, views: bool = False, local: bool = True) -> FeatureBatch:
    """Image features near their class's text embedding, with patch tokens and augmented views."""
    g = TEXT[labels] * 3 + 0.3 * torch.randn(len(labels), DIM, generator=gen)
    loc = g[:, None] + 0.5 * torch.randn(len(labels), PATCHES, DIM, generator=gen) if local else None
    v = g[None] + 0.2 * torch.randn(VIEWS, len(labels), DIM, generator=gen) if views else None
    return FeatureBatch(global_=g, local=loc, views=v)


def fit_data(shots: int = 2) -> FitData:
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(len(CLASSNAMES)).repeat_interleave(shots)
    yv = torch.arange(len(CLASSNAMES)).repeat_interleave(3)
    return FitData(train=features(y, gen, views=True), labels=y, val=features(yv, gen), val_labels=yv, shots=shots)


def fast_config(cls) -> object:
    """The method's defaults with training shortened (the contract, not the schedule, is under test)."""
    names = {f.name for f in dataclasses.fields(cls.Config)}
    budget = {
        "epochs": 3,
        "negative_epochs": 3,
        "search_steps_beta": 20,
        "coarse_steps": 3,
        "refine_steps": 3,
        "max_candidates": 700,  # negative-label methods: 105 nouns + 105 adjectives, enough for 100 groups
        "count": 300,
    }
    return make_config(cls, {k: v for k, v in budget.items() if k in names})


def fit_method(name: str, seed: int = 1):
    cls = METHODS.get(name)
    method = cls(config=fast_config(cls), context=context(seed))
    if fits_split(cls):
        with torch.enable_grad():
            method.fit(fit_data())
    return method


@functools.cache
def fitted(name: str, seed: int = 1):
    """A fitted method, shared by tests that only read it (determinism tests call fit_method directly)."""
    return fit_method(name, seed)


TEST = features(torch.tensor([0, 1, 2, 0, 1]), torch.Generator().manual_seed(5))


@torch.inference_mode()
def predict(method, batch: FeatureBatch = TEST) -> MethodOutput:
    return method.predict(batch)


@pytest.mark.parametrize("name", METHODS.names())
def test_config_is_frozen_dataclass_with_cited_paper(name):
    cls = METHODS.get(name)
    cfg = cls.Config()
    assert dataclasses.is_dataclass(cfg)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(cfg, dataclasses.fields(cfg)[0].name if dataclasses.fields(cfg) else "x", 1)
    assert cls.paper, f"{name} must cite its paper"
    assert cls.needs <= {"local", "views", "local_width"}
    if "views" in cls.needs:
        assert cfg.views >= 1


@pytest.mark.parametrize("name", METHODS.names())
def test_output_shapes_and_local_logits(name):
    out = predict(fitted(name))
    assert out.logits.shape == (5, len(CLASSNAMES))
    assert torch.isfinite(out.logits).all()
    assert isinstance(out.logit_scale, float) and out.logit_scale > 0
    if "local" in METHODS.get(name).provides:  # a method that provides patch logits fills them when given patches
        assert out.local_logits is not None and out.local_logits.shape == (5, PATCHES, len(CLASSNAMES))
        assert torch.isfinite(out.local_logits).all()
    for key, value in out.extra.items():  # every extra array it names in `provides`, one row per image
        assert key in METHODS.get(name).provides and value.shape[0] == 5 and torch.isfinite(value).all(), key
    without_local = predict(fitted(name), FeatureBatch(global_=TEST.global_))
    assert without_local.local_logits is None
    torch.testing.assert_close(without_local.logits, out.logits)


@pytest.mark.parametrize("name", METHODS.names())
def test_same_seed_same_logits(name):
    a, b = predict(fit_method(name, seed=3)), predict(fit_method(name, seed=3))
    assert torch.equal(a.logits, b.logits)
    assert (a.local_logits is None) == (b.local_logits is None)
    assert a.local_logits is None or torch.equal(a.local_logits, b.local_logits)
    assert a.extra.keys() == b.extra.keys() and all(torch.equal(a.extra[k], b.extra[k]) for k in a.extra)


@pytest.mark.parametrize("name", [n for n in METHODS.names() if fits_split(METHODS.get(n))])
def test_fit_learns_the_split(name):
    """Class means are random directions, so zero-shot misclassifies them; after fit every trained method
    fits its training split better than zero-shot does (lower cross-entropy, no lower accuracy). A method
    that ignores or misaligns the labels fails this."""
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat_interleave(4)
    means = 4 * torch.nn.functional.normalize(torch.randn(3, DIM, generator=gen), dim=-1)

    def batch(labels):
        g = means[labels] + 0.1 * torch.randn(len(labels), DIM, generator=gen)
        return FeatureBatch(
            global_=g,
            local=g[:, None] + 0.1 * torch.randn(len(labels), PATCHES, DIM, generator=gen),
            views=g[None] + 0.05 * torch.randn(VIEWS, len(labels), DIM, generator=gen),
        )

    data = FitData(train=batch(y), labels=y, val=batch(y), val_labels=y, shots=4)
    plain = FeatureBatch(global_=data.train.global_)
    zero_shot = predict(
        METHODS.get("zero_shot")(config=make_config(METHODS.get("zero_shot"), {}), context=context()), plain
    )
    cls = METHODS.get(name)
    names = {f.name for f in dataclasses.fields(cls.Config)}
    overrides = {"epochs": 80, "lr": 0.01, "warmup_epochs": 0, "negative_epochs": 5}
    cfg = make_config(cls, {k: v for k, v in overrides.items() if k in names})
    method = cls(config=cfg, context=context())
    with torch.enable_grad():
        method.fit(data)
    out = predict(method, plain)
    ce = torch.nn.functional.cross_entropy
    assert float(ce(out.logits, y)) < float(ce(zero_shot.logits, y)) - 0.02
    assert (out.logits.argmax(-1) == y).float().mean() >= (zero_shot.logits.argmax(-1) == y).float().mean()


@pytest.mark.parametrize("name", [n for n in METHODS.names() if fits_split(METHODS.get(n))])
def test_fit_works_without_a_validation_part(name):
    """A FitData whose val part is empty still fits: methods must not reach for other data to choose
    hyperparameters. (That the harness hands fit nothing but pool images is tested in test_harness.py.)"""
    cls = METHODS.get(name)
    data = fit_data()
    empty = FeatureBatch(global_=torch.zeros(0, DIM), local=torch.zeros(0, PATCHES, DIM))
    m = cls(config=fast_config(cls), context=context())
    with torch.enable_grad():
        m.fit(dataclasses.replace(data, val=empty, val_labels=torch.zeros(0, dtype=torch.long)))
    out = predict(m)
    assert out.logits.shape == (5, len(CLASSNAMES)) and torch.isfinite(out.logits).all()


# Example extra arrays for scores that read one, [N, ...] from an output's logits [N, C]: negative-label
# logits at 0 (a confident ID output beats them, a uniform one does not); AdaNeg's log OOD masses derived
# from the logits. A score reading an array not listed here fails test_every_score_is_higher... below.
EXAMPLE_EXTRA = {
    "neg_logits": lambda logits: torch.zeros(len(logits), 200),
    "neg_prompt_logits": lambda logits: torch.zeros(len(logits), 2 * logits.shape[1]),
    "adaneg_log_ood_adapted": lambda logits: -logits.max(dim=1).values,
    "adaneg_log_ood_vanilla": lambda logits: -logits.max(dim=1).values,
}


def with_extra(out: MethodOutput, spec) -> MethodOutput:
    """`out` with the example extra arrays `spec`'s score reads."""
    reads = spec.score.requires - {"local"}
    missing = sorted(reads - set(EXAMPLE_EXTRA))
    assert not missing, f"add an example for {missing} to EXAMPLE_EXTRA"
    return dataclasses.replace(out, extra={k: EXAMPLE_EXTRA[k](out.logits) for k in reads})


def score_input(out: MethodOutput, spec) -> ScoreInput:
    """A predict output as the harness turns it into a score's input (patch reduction included)."""
    local = None
    if spec.score.local is not None:
        local = spec.score.local(out.local_logits, out.logit_scale, **spec.config).numpy()
    return ScoreInput(
        logits=out.logits.float().numpy(),
        logit_scale=out.logit_scale,
        extra={k: v.numpy() for k, v in out.extra.items()},
        local=local,
    )


@pytest.mark.parametrize("score", SCORES.names())
def test_every_score_is_higher_for_confident_outputs(score):
    """Higher is more ID: a confident (one-hot-like) output scores above a uniform one."""
    spec = score_spec(score)
    scale = 10.0
    confident = torch.tensor([[1.0, -1.0, -1.0]]) * scale
    uniform = torch.zeros(1, 3)
    local_conf = confident[:, None].expand(1, PATCHES, 3).clone()
    local_unif = uniform[:, None].expand(1, PATCHES, 3).clone()
    hi_out = with_extra(MethodOutput(logits=confident, logit_scale=scale, local_logits=local_conf), spec)
    lo_out = with_extra(MethodOutput(logits=uniform, logit_scale=scale, local_logits=local_unif), spec)
    hi, lo = spec.score(score_input(hi_out, spec)), spec.score(score_input(lo_out, spec))
    assert hi.shape == (1,) and lo.shape == (1,)
    assert float(hi[0]) > float(lo[0])


@pytest.mark.parametrize("score", SCORES.names())
def test_every_score_works_on_every_method_that_provides_what_it_reads(score):
    spec = score_spec(score)
    for name in METHODS.names():
        if not spec.score.applies_to(frozenset(METHODS.get(name).provides)):
            continue
        values = spec.score(score_input(predict(fitted(name)), spec))
        assert values.shape == (5,) and np.isfinite(values).all(), (score, name)


def test_unknown_config_key_is_an_error():
    with pytest.raises(OodbenchError, match="Unknown config key"):
        make_config(METHODS.get("coop"), {"n_ctxx": 4})


def test_prompt_too_long_for_the_text_context_is_a_clear_error():
    cls = METHODS.get("coop")
    ctx = dataclasses.replace(context(), classnames=["a very long and winding class name " * 4] * 3)
    with pytest.raises(OodbenchError, match="context"):
        cls(config=make_config(cls, {"ctx_init": "", "n_ctx": 60}), context=ctx)


def test_random_init_context_depends_on_the_seed():
    cls = METHODS.get("coop")
    cfg = make_config(cls, {"ctx_init": "", "n_ctx": 4})
    a = cls(config=cfg, context=context(1)).learner.ctx
    b = cls(config=cfg, context=context(1)).learner.ctx
    c = cls(config=cfg, context=context(2)).learner.ctx
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (4, 16)


def test_prompt_learner_reproduces_the_text_encoder():
    """With 'a photo of a' as initial context, CoOp's untrained prompts equal the plain text embeddings."""
    cls = METHODS.get("coop")
    method = cls(config=make_config(cls, {"ctx_init": "a photo of a"}), context=context())
    torch.testing.assert_close(method.learner.text_features().detach(), TEXT, atol=1e-5, rtol=1e-5)


def misaligned_data(seed: int = 0, noise: float = 0.6) -> FitData:
    """Class means in random directions (the text classifier is no help) with noisy samples, so that a
    hyperparameter choice visibly changes validation accuracy."""
    gen = torch.Generator().manual_seed(seed)
    means = 3 * torch.nn.functional.normalize(torch.randn(3, DIM, generator=gen), dim=-1)

    def batch(labels):
        g = means[labels] + noise * torch.randn(len(labels), DIM, generator=gen)
        return FeatureBatch(global_=g, views=g[None] + 0.05 * torch.randn(VIEWS, len(labels), DIM, generator=gen))

    y, yv = torch.arange(3).repeat_interleave(4), torch.arange(3).repeat_interleave(10)
    return FitData(train=batch(y), labels=y, val=batch(yv), val_labels=yv, shots=4)


def test_tip_adapter_search_picks_the_best_pair_on_validation():
    """The chosen (alpha, beta) reaches the best validation accuracy of the search grid, recomputed here
    from the cache model's formula; a method that kept its initial values or read anything but `val` fails."""
    cls = METHODS.get("tip_adapter")
    data = misaligned_data()
    m = cls(config=fast_config(cls), context=context())
    m.fit(data)
    f = torch.nn.functional.normalize(data.val.global_, dim=-1)
    scale = BACKBONE.logit_scale

    def accuracy(alpha: float, beta: float) -> float:
        cache = torch.exp(-beta * (1 - f @ m.keys.T)) @ m.values
        logits = scale * f @ TEXT.T + alpha * cache
        return float((logits.argmax(-1) == data.val_labels).float().mean())

    c = m.config
    grid = [
        (
            0.1 + i * (c.search_scale_alpha - 0.1) / c.search_steps_alpha,
            0.1 + j * (c.search_scale_beta - 0.1) / c.search_steps_beta,
        )
        for i in range(c.search_steps_alpha)
        for j in range(c.search_steps_beta)
    ]
    best = max(accuracy(a, b) for a, b in grid)
    assert accuracy(m.alpha, m.beta) == pytest.approx(best)
    assert accuracy(c.init_alpha, c.init_beta) < best  # the data makes the search matter


def test_linear_probe_c_is_at_least_as_good_on_validation_as_every_coarse_candidate():
    """Recomputed independently with scikit-learn: no coarse candidate beats the chosen C on the validation part."""
    from sklearn.linear_model import LogisticRegression

    cls = METHODS.get("linear_probe")
    data = misaligned_data(noise=1.5)
    m = cls(config=fast_config(cls), context=context())
    m.fit(data)
    prep = getattr(m, "prepare_features", lambda x: torch.nn.functional.normalize(x, dim=-1))
    x, y = prep(data.train.global_).numpy(), data.labels.numpy()
    xv, yv = prep(data.val.global_).numpy(), data.val_labels.numpy()

    def accuracy(c: float) -> float:
        clf = LogisticRegression(C=c, max_iter=m.config.max_iter).fit(x, y)
        return float((clf.predict(xv) == yv).mean())

    coarse = np.logspace(m.config.c_min_log10, m.config.c_max_log10, m.config.coarse_steps)
    accs = [accuracy(float(c)) for c in coarse]
    assert max(accs) > min(accs)  # the data makes the choice matter
    assert accuracy(m.c_value) >= max(accs) - 1e-12


@pytest.mark.parametrize("name", METHODS.names())
def test_config_round_trips_through_its_canonical_json(name):
    """What a result row stores as method_config builds the same config again (so every entry can be
    reproduced), tuples included."""
    cls = METHODS.get(name)
    for family in (None, "imagenet", "food101"):
        config = make_config(cls, None, family=family)
        assert make_config(cls, json.loads(canonical_config(config))) == config


def test_config_bounds_and_types_are_checked_before_any_work():
    coop = METHODS.get("coop")
    with pytest.raises(OodbenchError, match="outside its allowed range"):
        make_config(coop, {"n_ctx": 10**12})
    with pytest.raises(OodbenchError, match="outside its allowed range"):
        make_config(coop, {"epochs": 10**8})
    with pytest.raises(OodbenchError, match="takes a whole number"):
        make_config(coop, {"n_ctx": 1e12})
    with pytest.raises(OodbenchError, match="takes true/false"):
        make_config(METHODS.get("tip_adapter"), {"search": "yes"})
    assert make_config(coop, {"lr": 1}).lr == 1.0  # an int where a float is expected is fine
