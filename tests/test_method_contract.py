"""Contract tests over the whole METHODS and SCORES registries: every registered method and score gets
the same checks. Methods run on tiny synthetic features and a tiny randomly initialised open_clip model
(the prompt learners need its text tower), so the whole file takes seconds. Methods that tune the encoders
(needs={"images"}) also get the split as tiny synthetic images and a trainable copy of that model."""

from __future__ import annotations

import dataclasses
import functools
import json

import numpy as np
import open_clip
import pytest
import torch
from open_clip.tokenizer import SimpleTokenizer
from PIL import Image

from benchmark.backbones import Backbone
from benchmark.errors import OodbenchError
from benchmark.splitimages import SplitImages
from benchmark.tuned import TunedWeights, trainable_copy
from methods import METHODS, SCORES, load_methods
from methods.base import (
    FeatureBatch,
    FitData,
    Method,
    MethodConfig,
    MethodContext,
    MethodOutput,
    canonical_config,
    fits_split,
    make_config,
    tunes_encoders,
    unbounded_fields,
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


TEMPLATES = ["a photo of a {}.", "a drawing of a {}."]
TUNERS = [n for n in METHODS.names() if tunes_encoders(METHODS.get(n))]


def context(seed: int = 1, *, tuner: bool = False) -> MethodContext:
    """The harness's context; an encoder-tuning method gets a fresh trainable copy of the backbone."""
    backbone = (
        dataclasses.replace(BACKBONE, model=trainable_copy(BACKBONE.model, torch.device("cpu"))) if tuner else BACKBONE
    )
    return MethodContext(
        backbone=backbone,
        classnames=CLASSNAMES,
        text_features=TEXT,
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(seed),
        text_classifier=classifier,
        templates=TEMPLATES,
    )


class ToyImages:
    """A dataset-like list of 14x14 RGB images (what SplitImages reads: len, labels, get_image). Class c lights
    up one quadrant (c = 0, 1, 2), plus noise."""

    def __init__(self, labels: torch.Tensor, seed: int = 0) -> None:
        self.labels = labels.numpy()
        rng = np.random.default_rng(seed)
        self.pixels = rng.integers(0, 60, size=(len(labels), 14, 14, 3), dtype=np.uint8)
        for i, c in enumerate(self.labels):
            r, col = divmod(int(c), 2)
            self.pixels[i, r * 7 : r * 7 + 7, col * 7 : col * 7 + 7] += 180

    def __len__(self) -> int:
        return len(self.labels)

    def get_image(self, i: int) -> Image.Image:
        return Image.fromarray(self.pixels[i])


def plain(images: list) -> torch.Tensor:
    """Images as the eval transform of the tiny backbone gives them (no resize needed: 14x14), normalised."""
    from methods.shared.augment import backbone_transform

    transform = backbone_transform("none", BACKBONE)
    return torch.stack([transform(im) for im in images])


def features(labels: torch.Tensor, gen: torch.Generator, *, views: bool = False, local: bool = True) -> FeatureBatch:
    """Image features near their class's text embedding, with patch tokens and augmented views."""
    g = TEXT[labels] * 3 + 0.3 * torch.randn(len(labels), DIM, generator=gen)
    loc = g[:, None] + 0.5 * torch.randn(len(labels), PATCHES, DIM, generator=gen) if local else None
    v = g[None] + 0.2 * torch.randn(VIEWS, len(labels), DIM, generator=gen) if views else None
    lv = None
    if views and local:  # patch tokens of each view, float16 on the CPU as the harness hands them over
        lv = (v[:, :, None] + 0.5 * torch.randn(VIEWS, len(labels), PATCHES, DIM, generator=gen)).half()
    return FeatureBatch(global_=g, local=loc, views=v, local_views=lv)


def fit_data(shots: int = 2) -> FitData:
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(len(CLASSNAMES)).repeat_interleave(shots)
    yv = torch.arange(len(CLASSNAMES)).repeat_interleave(3)
    return FitData(
        train=features(y, gen, views=True),
        labels=y,
        val=features(yv, gen),
        val_labels=yv,
        shots=shots,
        images=SplitImages(ToyImages(y)),
    )


def fast_config(cls) -> object:
    """The method's defaults with training shortened (the contract, not the schedule, is under test)."""
    names = {f.name for f in dataclasses.fields(cls.Config)}
    budget = {
        "epochs": 3,
        "negative_epochs": 3,
        "search_steps_beta": 20,
        "coarse_steps": 3,
        "refine_steps": 3,
        "iters_per_shot": 2,
        "probe_num_c": 3,
        "max_candidates": 700,  # negative-label methods: 105 nouns + 105 adjectives, enough for 100 groups
        "count": 300,
    }
    return make_config(cls, {k: v for k, v in budget.items() if k in names})


def fit_method(name: str, seed: int = 1):
    cls = METHODS.get(name)
    method = cls(config=fast_config(cls), context=context(seed, tuner=tunes_encoders(cls)))
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
    assert cls.needs <= {"local", "views", "images", "local_width"}
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


@pytest.mark.parametrize("name", [n for n in METHODS.names() if fits_split(METHODS.get(n)) and n not in TUNERS])
def test_fit_learns_the_split(name):
    """Class means are random directions, so zero-shot misclassifies them; after fit every trained method
    fits its training split better than zero-shot does (lower cross-entropy, no lower accuracy). A method
    that ignores or misaligns the labels fails this."""
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat_interleave(4)
    means = 4 * torch.nn.functional.normalize(torch.randn(3, DIM, generator=gen), dim=-1)

    def batch(labels):
        g = means[labels] + 0.1 * torch.randn(len(labels), DIM, generator=gen)
        views = g[None] + 0.05 * torch.randn(VIEWS, len(labels), DIM, generator=gen)
        return FeatureBatch(
            global_=g,
            local=g[:, None] + 0.1 * torch.randn(len(labels), PATCHES, DIM, generator=gen),
            views=views,
            local_views=views[:, :, None] + 0.1 * torch.randn(VIEWS, len(labels), PATCHES, DIM, generator=gen),
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
    m = cls(config=fast_config(cls), context=context(tuner=tunes_encoders(cls)))
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


def test_tip_adapter_keys_are_the_normalised_mean_of_raw_view_features():
    """Tip-Adapter averages the raw features of its augment epochs, then normalises (utils.py:L52-60): views of
    different lengths weigh by their length, which the mean of normalised views would not do."""
    cls = METHODS.get("tip_adapter")
    m = cls(config=fast_config(cls), context=context())
    a, b = torch.tensor([[10.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    views = torch.stack([a, b])  # [V=2, N=1, D=2]
    m.build_cache(
        FitData(
            train=FeatureBatch(global_=a, views=views),
            labels=torch.tensor([0]),
            val=FeatureBatch(global_=a),
            val_labels=torch.tensor([0]),
            shots=1,
        )
    )
    torch.testing.assert_close(m.keys, torch.nn.functional.normalize(torch.tensor([[5.0, 0.5]]), dim=-1))


@pytest.mark.parametrize(
    "name, family, templates",
    [
        ("tip_adapter", "imagenet", "tip_adapter_imagenet"),
        ("tip_adapter_f", "food101", "food101"),
        ("clip_adapter", "imagenet", "simple"),
        ("clip_adapter", "oxford-pets", "oxford-pets"),
        ("tip_adapter", "cub200", None),
    ],
)
def test_adapters_classify_with_their_authors_templates_per_family(name, family, templates):
    """Tip-Adapter's and CLIP-Adapter's text classifier is built from their own per-dataset templates
    (Tip-Adapter's 7-template ensemble on ImageNet); without one (CUB) the suite's zero-shot classifier."""
    from benchmark.suites import load_templates

    cls = METHODS.get(name)
    m = cls(config=make_config(cls, None, family=family), context=context())
    want = classifier(load_templates(templates)) if templates else TEXT
    torch.testing.assert_close(m.text, want)
    if templates == "tip_adapter_imagenet":
        assert len(load_templates(templates)) == 7


def test_family_defaults_reach_the_config():
    assert make_config(METHODS.get("coop"), None, family="imagenet").epochs == 50
    assert make_config(METHODS.get("coop"), None, family="food101").epochs == 0  # the schedule by shots
    assert make_config(METHODS.get("locoop"), None, family="imagenet").epochs == 50
    cars = make_config(METHODS.get("tip_adapter_f"), None, family="stanford-cars")
    assert (cars.search_scale_beta, cars.search_scale_alpha, cars.init_alpha) == (20.0, 10.0, 3.0)
    assert make_config(METHODS.get("clip_adapter"), None, family="imagenet").epochs == 50


def lpclip_search(x, y, xv, yv, *, coarse: list[float], steps: int, max_iter: int) -> float:
    """CoOp's lpclip search written out again from KaiyangZhou/CoOp lpclip/linear_probe.py:L53-118: the first
    best of the coarse list, then `steps` rounds that fit C_left and C_right, keep C_right only when it is
    strictly better, and move the other end to the midpoint in log10. Returns the C of the last round."""
    from sklearn.linear_model import LogisticRegression

    def acc(c):
        clf = LogisticRegression(solver="lbfgs", max_iter=max_iter, C=c).fit(x, y)  # penalty: l2, the default
        return sum(clf.predict(xv) == yv) / len(yv)

    accs = [acc(c) for c in coarse]
    peak = coarse[int(np.argmax(accs))]
    c_left, c_right = 1e-1 * peak, 1e1 * peak
    final = None
    for _ in range(steps):
        a_left, a_right = acc(c_left), acc(c_right)
        mid = 0.5 * (np.log10(c_right) + np.log10(c_left))
        if a_left < a_right:
            final, lo, hi = c_right, mid, np.log10(c_right)
        else:
            final, lo, hi = c_left, np.log10(c_left), mid
        c_left, c_right = np.power(10, lo), np.power(10, hi)
    return final


def test_linear_probe_follows_lpclip_search_on_the_first_val_shots_of_each_class():
    """The chosen C equals an independent rewrite of lpclip's search, fitted on the raw features and
    validated on the first `val_shots` images of each class (4 at 4 shots) of the validation part."""
    cls = METHODS.get("linear_probe")
    data = misaligned_data(seed=4, noise=1.5)  # data on which 4 and 10 validation images per class disagree
    m = cls(config=make_config(cls, {"refine_steps": 4}), context=context())
    m.fit(data)
    x, y = data.train.global_.numpy(), data.labels.numpy()
    yv_all = data.val_labels.numpy()
    keep = np.concatenate([np.flatnonzero(yv_all == c)[:4] for c in range(3)])
    keep.sort()
    c = m.config
    coarse = [10.0**e for e in np.linspace(c.c_max_log10, c.c_min_log10, c.coarse_steps)]
    assert coarse[0] == 1e6 and coarse[-1] == pytest.approx(1e-6) and len(coarse) == 7
    want = lpclip_search(
        x, y, data.val.global_.numpy()[keep], yv_all[keep], coarse=coarse, steps=4, max_iter=c.max_iter
    )
    assert m.c_value == pytest.approx(want, rel=1e-9)
    # features are raw: the probe's logits are an affine function of the unnormalised feature
    f = data.val.global_[:2]
    torch.testing.assert_close(m.head(2 * f) - m.head(f), m.head(f) - m.head(torch.zeros_like(f)))


def test_linear_probe_val_shots_by_shot_count():
    from methods.linear_probe import first_per_class, val_per_class

    table = METHODS.get("linear_probe").Config().val_shots
    assert [val_per_class(k, table) for k in (1, 2, 3, 4, 8, 16, 32)] == [1, 2, 2, 4, 4, 4, 4]
    labels = np.array([2, 0, 2, 1, 0, 2, 0, 1])
    assert first_per_class(labels, 2).tolist() == [0, 1, 2, 3, 4, 7]
    with pytest.raises(OodbenchError, match="val_shots"):
        METHODS.get("linear_probe")(
            config=make_config(METHODS.get("linear_probe"), {"val_shots": [[4, 0]]}), context=context()
        )


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
    with pytest.raises(OodbenchError, match="at most 1000 are allowed"):
        make_config(coop, {"ctx_init": "a photo of " * 200})  # text has a length bound too
    with pytest.raises(OodbenchError, match="at most 64 are allowed"):
        make_config(METHODS.get("gallop"), {"topk": tuple(range(1, 66))})  # a variable-length field


@pytest.mark.parametrize("name", METHODS.names())
def test_every_numeric_config_field_declares_its_bounds(name):
    assert unbounded_fields(METHODS.get(name).Config) == []


def test_a_method_with_an_unbounded_numeric_field_is_refused_at_registration():
    @dataclasses.dataclass(frozen=True)
    class Config(MethodConfig):
        steps: int = 10  # no param(..., low=, high=)

    class Unbounded(Method):
        protocol = "zero-shot"
        paper = "nobody"

        def predict(self, batch):  # pragma: no cover - never run
            raise NotImplementedError

    Unbounded.Config = Config
    with pytest.raises(OodbenchError, match=r"every numeric Config field needs bounds.*\['steps'\]"):
        with METHODS.temporarily("unbounded", Unbounded):
            pass


# ---------------------------------------------------------------- methods that tune the encoders


def tuned_outputs(method, images: list) -> MethodOutput:
    """What the harness does after fit: encode images with the tuned model, then predict on those features."""
    with torch.inference_mode():
        feats = method.tuned_model().encode_image(plain(images))
        return method.predict(FeatureBatch(global_=feats))


@pytest.mark.parametrize("name", TUNERS)
def test_encoder_tuners_learn_the_split_images(name):
    """On images whose class is a bright quadrant (which the random tiny model's zero-shot classifier cannot
    read), every encoder-tuning method fits its training images better than zero-shot does, judged on the
    features its own tuned model gives them."""
    cls = METHODS.get(name)
    y = torch.arange(3).repeat_interleave(4)
    toy = ToyImages(y, seed=3)
    images = [toy.get_image(i) for i in range(len(y))]
    with torch.no_grad():
        frozen = BACKBONE.model.encode_image(plain(images))
    data = FitData(
        train=FeatureBatch(global_=frozen),
        labels=y,
        val=FeatureBatch(global_=frozen),
        val_labels=y,
        shots=4,
        images=SplitImages(toy),
    )
    names = {f.name for f in dataclasses.fields(cls.Config)}
    wanted = {"epochs": 40, "lr": 1e-3, "iters_per_shot": 40, "augmentation": "none", "batch_size": 12, "alpha": 1.0}
    method = cls(config=make_config(cls, {k: v for k, v in wanted.items() if k in names}), context=context(tuner=True))
    with torch.enable_grad():
        method.fit(data)
    zero_shot = predict(
        METHODS.get("zero_shot")(config=make_config(METHODS.get("zero_shot"), {}), context=context()),
        FeatureBatch(global_=frozen),
    )
    out = tuned_outputs(method, images)
    ce = torch.nn.functional.cross_entropy
    assert float(ce(out.logits, y)) < float(ce(zero_shot.logits, y)) - 0.02
    assert (out.logits.argmax(-1) == y).float().mean() >= (zero_shot.logits.argmax(-1) == y).float().mean()


@pytest.mark.parametrize("name", TUNERS)
def test_encoder_tuners_train_their_copy_and_never_the_frozen_backbone(name):
    before = {k: v.clone() for k, v in BACKBONE.model.state_dict().items()}
    method = fit_method(name)
    after = BACKBONE.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    tuned = method.tuned_model().state_dict()
    assert method.tuned_model() is not BACKBONE.model
    assert any(not torch.equal(before[k], tuned[k]) for k in before)  # the copy did change


@pytest.mark.parametrize("name", TUNERS)
def test_tuned_weights_rebuild_the_fitted_method_exactly(name):
    """What an entry ships: the same fit gives the same bytes; loading them into a fresh method gives the same
    tuned model, the same predictions and the same bytes again."""
    cls = METHODS.get(name)
    method = fit_method(name, seed=2)
    blob = method.tuned_weights().to_bytes()
    assert fit_method(name, seed=2).tuned_weights().to_bytes() == blob  # deterministic on a CPU
    assert fit_method(name, seed=3).tuned_weights().to_bytes() != blob
    loaded = cls(config=fast_config(cls), context=context(9, tuner=True))
    loaded.load_tuned_weights(TunedWeights.from_bytes(blob))
    assert loaded.tuned_weights().to_bytes() == blob
    a, b = method.tuned_model().state_dict(), loaded.tuned_model().state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    toy = ToyImages(torch.tensor([0, 1, 2]), seed=5)
    images = [toy.get_image(i) for i in range(3)]
    assert torch.equal(tuned_outputs(method, images).logits, tuned_outputs(loaded, images).logits)


def test_tuned_weights_of_another_method_or_backbone_are_refused():
    blob = fit_method("full_ft").tuned_weights()
    wise = METHODS.get("wise_ft")
    with pytest.raises(OodbenchError, match="written by method 'full_ft', not 'wise_ft'"):
        wise(config=fast_config(wise), context=context(tuner=True)).load_tuned_weights(blob)
    other = TunedWeights(blob.tensors, {**blob.metadata, "oodbench_base_weights_sha256": "1" * 64})
    full = METHODS.get("full_ft")
    with pytest.raises(OodbenchError, match="apply to the backbone"):
        full(config=fast_config(full), context=context(tuner=True)).load_tuned_weights(other)
    lora = METHODS.get("clip_lora")
    shipped = fit_method("clip_lora").tuned_weights()
    with pytest.raises(OodbenchError, match="config asks for"):
        lora(config=make_config(lora, {"rank": 4}), context=context(tuner=True)).load_tuned_weights(shipped)


def test_wise_ft_endpoints_are_zero_shot_and_full_fine_tuning():
    """alpha 0: the image encoder is the frozen one and the logits are zero-shot CLIP's to the bit; alpha 1: the
    model and logits of full_ft (the same fine-tuning stage)."""
    wise, full = METHODS.get("wise_ft"), METHODS.get("full_ft")
    toy = ToyImages(torch.tensor([0, 1, 2, 0]), seed=7)
    images = [toy.get_image(i) for i in range(4)]
    at0 = wise(config=make_config(wise, {"epochs": 3, "alpha": 0.0}), context=context(tuner=True))
    with torch.enable_grad():
        at0.fit(fit_data())
    frozen, tuned = BACKBONE.model.state_dict(), at0.tuned_model().state_dict()
    assert all(torch.equal(frozen[k], tuned[k]) for k in frozen)
    zs = METHODS.get("zero_shot")(config=make_config(METHODS.get("zero_shot"), {}), context=context())
    assert torch.equal(predict(at0).logits, predict(zs).logits)
    assert torch.equal(predict(at0).local_logits, predict(zs).local_logits)
    at1 = wise(config=make_config(wise, {"epochs": 3, "alpha": 1.0}), context=context(tuner=True))
    ft = full(config=make_config(full, {"epochs": 3}), context=context(tuner=True))
    with torch.enable_grad():
        at1.fit(fit_data())
        ft.fit(fit_data())
    assert torch.equal(tuned_outputs(at1, images).logits, tuned_outputs(ft, images).logits)
    half = wise(config=make_config(wise, {"epochs": 3, "alpha": 0.5}), context=context(tuner=True))
    with torch.enable_grad():
        half.fit(fit_data())
    w0, w1, wh = (m.head.weight for m in (at0, at1, half))
    torch.testing.assert_close(wh, (w0 + w1) / 2)


def test_clip_lora_ships_only_the_adapters_and_predicts_with_the_merged_model():
    from methods.shared.lora import LoraAttention, LoraSpec

    method = fit_method("clip_lora")
    weights = method.tuned_weights()
    assert weights.kind == "lora" and weights.tensors
    assert all(".lora_A_" in k or ".lora_B_" in k for k in weights.tensors)
    assert LoraSpec.from_metadata(weights.metadata) == method.config.spec()
    assert not any(isinstance(m, LoraAttention) for m in method.tuned_model().modules())
    assert set(method.tuned_model().state_dict()) == set(BACKBONE.model.state_dict())  # plain names again
