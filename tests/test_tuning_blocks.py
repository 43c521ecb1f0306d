"""The building blocks of encoder-tuning methods (methods/shared/): LoRA on open_clip attention, the
fine-tuning loops (full FT, LP-FT, FLYP, CLIP-LoRA), WiSE-FT interpolation, and the training utilities
(schedules, gradient accumulation, halving on out-of-memory). Everything runs on tiny randomly initialised
open_clip models on the CPU in a few seconds."""

from __future__ import annotations

import math

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from open_clip.tokenizer import SimpleTokenizer

from benchmark.errors import OodbenchError
from methods.shared.augment import augment_batch, train_transform
from methods.shared.finetune import (
    ImageClassifier,
    ProbeConfig,
    TrainConfig,
    clip_contrastive_loss,
    clip_lora_finetune,
    encode_class_texts,
    finetune_classifier,
    fit_linear_probe,
    flyp_finetune,
    lp_ft,
    lr_at,
    steps_for,
    wise_ft_interpolate,
    zero_shot_head,
)
from methods.shared.lora import (
    LoraAttention,
    LoraSpec,
    apply_lora,
    load_lora_state_dict,
    lora_modules,
    lora_parameters,
    lora_state_dict,
    merge_lora,
)

CLASSNAMES = ["cat", "dog", "bird", "fish"]
TEMPLATES = ["a photo of a {}.", "a drawing of a {}."]
TOKENIZER = SimpleTokenizer(context_length=16)
CPU = torch.device("cpu")
BLOCK_TYPES = [None, "custom"]  # nn.MultiheadAttention blocks, open_clip's own Attention blocks


def tiny_clip(block_type: str | None = None, seed: int = 0) -> open_clip.CLIP:
    torch.manual_seed(seed)
    model = open_clip.CLIP(
        embed_dim=8,
        vision_cfg=open_clip.model.CLIPVisionCfg(
            image_size=14, layers=2, width=16, head_width=8, patch_size=7, block_type=block_type
        ),
        text_cfg=open_clip.model.CLIPTextCfg(
            context_length=16, vocab_size=49408, width=16, heads=2, layers=1, block_type=block_type
        ),
    )
    return model.eval().requires_grad_(False)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 14, 14, generator=gen(seed))


def toy_set(n_per_class: int = 4, seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Separable images: class c lights up quadrant c of every channel, plus a little noise."""
    g = gen(seed)
    labels = torch.arange(len(CLASSNAMES)).repeat_interleave(n_per_class)
    x = 0.1 * torch.randn(len(labels), 3, 14, 14, generator=g)
    for i, c in enumerate(labels.tolist()):
        r, col = divmod(c, 2)
        x[i, :, r * 7 : r * 7 + 7, col * 7 : col * 7 + 7] += 2.0
    return x, labels


def batches_of(x: torch.Tensor, y: torch.Tensor, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x[s : s + size], y[s : s + size]) for s in range(0, len(y), size)]


def outputs(model, x=None, tokens=None):
    x = images() if x is None else x
    tokens = TOKENIZER(["a cat", "a small dog"]) if tokens is None else tokens
    with torch.no_grad():
        return model.encode_image(x), model.encode_text(tokens)


def randomise_b(model, seed: int = 3) -> None:
    g = gen(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def assert_close_weights(a: torch.nn.Module, b: torch.nn.Module, *, atol: float) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], atol=atol, rtol=1e-5, msg=k)


# -- LoRA ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("block_type", BLOCK_TYPES)
def test_lora_zero_init_gives_the_original_outputs_exactly(block_type):
    model, ref = tiny_clip(block_type), tiny_clip(block_type)
    wrapped = apply_lora(model, spec=LoraSpec(), generator=gen())
    assert len(wrapped) == 3  # 2 vision blocks + 1 text block, CLIP-LoRA's position "all" in both encoders
    for w in wrapped:
        assert all((getattr(w, f"lora_B_{p}") == 0).all() for p in "qkv")
        assert all(getattr(w, f"lora_A_{p}").abs().max() > 0 for p in "qkv")
    for got, want in zip(outputs(model), outputs(ref), strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize("block_type", BLOCK_TYPES)
def test_lora_explicit_training_path_computes_the_same_attention(block_type):
    """The path used with dropout in training recomputes attention by hand; with the dropout switched off it
    must give what the module's own code gives with the merged weights (non-zero B, causal text mask)."""
    model = tiny_clip(block_type)
    apply_lora(model, spec=LoraSpec(params=("q", "k", "v", "o")), generator=gen())
    randomise_b(model)
    merged = outputs(model)
    for w in lora_modules(model).values():
        w.forward = lambda *a, _w=w, **k: _w._forward_explicit(*a, dropout=0.0, **k)
    explicit = outputs(model)
    for got, want in zip(explicit, merged, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(merged[0], outputs(tiny_clip(block_type))[0], atol=1e-3)  # B != 0 changed it


def test_lora_only_adapters_are_trainable_with_clip_lora_shapes():
    model = tiny_clip()
    spec = LoraSpec()
    apply_lora(model, spec=spec, generator=gen())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    # rank 2, q/k/v, width 16: (2*16 + 16*2) per projection, 3 projections, 3 blocks
    assert sum(p.numel() for p in lora_parameters(model)) == 3 * 3 * (2 * 16 + 16 * 2)
    assert spec.scaling == pytest.approx(1 / math.sqrt(2))  # CLIP-LoRA: alpha / sqrt(r)
    a = lora_modules(model)["visual.transformer.resblocks.0.attn"].lora_A_q
    assert a.abs().max() <= 1 / math.sqrt(16)  # kaiming_uniform(a=sqrt(5)) bound 1/sqrt(fan_in)


def test_lora_encoder_and_position_choices():
    vision_only = tiny_clip()
    apply_lora(vision_only, spec=LoraSpec(encoder="vision"), generator=gen())
    assert sorted(lora_modules(vision_only)) == [f"visual.transformer.resblocks.{i}.attn" for i in (0, 1)]
    text_only = tiny_clip()
    apply_lora(text_only, spec=LoraSpec(encoder="text", position="half-up"), generator=gen())
    assert sorted(lora_modules(text_only)) == ["transformer.resblocks.0.attn"]  # 1 block: half-up = [0]
    with pytest.raises(OodbenchError, match="12-block"):
        apply_lora(tiny_clip(), spec=LoraSpec(position="bottom"), generator=gen())
    with pytest.raises(OodbenchError, match="params"):
        apply_lora(tiny_clip(), spec=LoraSpec(params=("q", "x")), generator=gen())
    with pytest.raises(OodbenchError, match="already"):
        apply_lora(vision_only, spec=LoraSpec(), generator=gen())


def test_lora_same_seed_same_adapters_and_dropout_masks():
    a, b = tiny_clip(), tiny_clip()
    apply_lora(a, spec=LoraSpec(), generator=gen(5))
    apply_lora(b, spec=LoraSpec(), generator=gen(5))
    randomise_b(a)
    randomise_b(b)
    a.train()
    b.train()
    x = images()
    with torch.no_grad():
        out_a, out_b = a.encode_image(x), b.encode_image(x)
        assert torch.equal(out_a, out_b)
        a.eval()
        assert not torch.allclose(out_a, a.encode_image(x))  # the branch dropout acts in training only


@pytest.mark.parametrize("block_type", BLOCK_TYPES)
def test_lora_merge_gives_the_unmerged_outputs_and_a_plain_model(block_type):
    model = tiny_clip(block_type)
    apply_lora(model, spec=LoraSpec(params=("q", "v", "o")), generator=gen())
    randomise_b(model)
    before = outputs(model)
    merge_lora(model)
    assert not lora_modules(model)
    assert model.state_dict().keys() == tiny_clip(block_type).state_dict().keys()
    for got, want in zip(outputs(model), before, strict=True):
        assert torch.equal(got, want)


def test_lora_delta_round_trip_through_safetensors(tmp_path):
    from safetensors.torch import load_file, save_file

    spec = LoraSpec()
    trained = tiny_clip()
    apply_lora(trained, spec=spec, generator=gen(1))
    randomise_b(trained)
    path = tmp_path / "delta.safetensors"
    save_file(lora_state_dict(trained), path, metadata=spec.to_metadata())
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        meta = f.metadata()
    fresh = tiny_clip()
    apply_lora(fresh, spec=LoraSpec.from_metadata(meta), generator=gen(99))  # other A: all overwritten
    load_lora_state_dict(fresh, load_file(path))
    for got, want in zip(outputs(fresh), outputs(trained), strict=True):
        assert torch.equal(got, want)

    other_params = tiny_clip()
    apply_lora(other_params, spec=LoraSpec(params=("q", "v")), generator=gen())
    with pytest.raises(OodbenchError, match="unexpected"):
        load_lora_state_dict(other_params, load_file(path))
    other_rank = tiny_clip()
    apply_lora(other_rank, spec=LoraSpec(rank=4), generator=gen())
    with pytest.raises(OodbenchError, match="shape"):
        load_lora_state_dict(other_rank, load_file(path))
    with pytest.raises(OodbenchError, match="no LoRA"):
        load_lora_state_dict(tiny_clip(), load_file(path))


# -- heads, text classifier ---------------------------------------------------------------------------------


def test_zero_shot_head_reproduces_zero_shot_logits():
    model = tiny_clip()
    text = encode_class_texts(model, TOKENIZER, CLASSNAMES, TEMPLATES, device=CPU)
    scale = float(model.logit_scale.exp())
    clf = ImageClassifier(model, zero_shot_head(text, logit_scale=scale))
    x = images()
    with torch.no_grad():
        feats = F.normalize(model.encode_image(x), dim=-1)
        torch.testing.assert_close(clf(x), scale * feats @ text.T)


def test_encode_class_texts_is_the_normalised_mean_of_normalised_prompts():
    model = tiny_clip()
    text = encode_class_texts(model, TOKENIZER, CLASSNAMES, TEMPLATES, device=CPU)
    with torch.no_grad():
        e = F.normalize(model.encode_text(TOKENIZER([t.format("dog") for t in TEMPLATES])), dim=-1)
    want = (e[0] + e[1]) / (e[0] + e[1]).norm()
    torch.testing.assert_close(text[1], want)
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(len(CLASSNAMES)))


# -- schedules and config -------------------------------------------------------------------------------------


def test_warmup_cosine_matches_wise_ft_formula():
    cfg = TrainConfig(steps=10, lr=1.0, warmup_steps=4)
    assert [lr_at(s, cfg) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(4, cfg) == pytest.approx(1.0)  # cosine starts at the peak
    assert lr_at(7, cfg) == pytest.approx(0.5)  # halfway through the 6 cosine steps
    assert lr_at(9, cfg) == pytest.approx(0.5 * (1 + math.cos(math.pi * 5 / 6)))
    flyp = TrainConfig(steps=10, lr=1.0, min_lr=0.1)
    assert lr_at(0, flyp) == pytest.approx(1.1)  # FLYP adds min_lr on top


@pytest.mark.parametrize("per_tick", [1, 3])
def test_cosine_matches_torch_cosine_annealing(per_tick):
    steps, base, eta_min = 9, 0.2, 1e-3
    cfg = TrainConfig(steps=steps, lr=base, schedule="cosine", min_lr=eta_min, steps_per_tick=per_tick)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=math.ceil(steps / per_tick), eta_min=eta_min)
    want = []
    for s in range(steps):
        want.append(opt.param_groups[0]["lr"])
        if (s + 1) % per_tick == 0:
            opt.step()
            sched.step()
    assert [lr_at(s, cfg) for s in range(steps)] == pytest.approx(want)


def test_bad_training_config_is_a_clear_error():
    with pytest.raises(OodbenchError, match="optimizer"):
        TrainConfig(steps=1, lr=1.0, optimizer="adam").validate()
    with pytest.raises(OodbenchError, match="epochs"):
        steps_for(epochs=0, n_images=10, batch_size=4)
    assert steps_for(epochs=3, n_images=10, batch_size=4) == 9


# -- cross-entropy fine-tuning ----------------------------------------------------------------------------


def ft_model(seed: int = 0) -> ImageClassifier:
    clip = tiny_clip(seed=seed)
    text = encode_class_texts(clip, TOKENIZER, CLASSNAMES, TEMPLATES, device=CPU)
    return ImageClassifier(clip, zero_shot_head(text, logit_scale=float(clip.logit_scale.exp())))


def test_full_ft_reduces_training_loss_and_tunes_only_the_image_side():
    x, y = toy_set()
    model = ft_model()
    text_before = {k: v.clone() for k, v in model.clip.state_dict().items() if not k.startswith("visual.")}
    cfg = TrainConfig(steps=40, lr=3e-3, weight_decay=0.1, grad_clip=1.0, warmup_steps=5)
    model, result = finetune_classifier(model, batches_of(x, y, 8), config=cfg, generator=gen(), device=CPU)
    assert len(result.losses) == 40 and result.steps == 40
    assert np.mean(result.losses[-5:]) < 0.5 * result.losses[0]
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() == 1.0
    for k, v in model.clip.state_dict().items():
        if not k.startswith("visual."):
            assert torch.equal(v, text_before[k]), k
    assert result.seconds > 0 and result.peak_memory_bytes > 0
    assert result.memory_source == "process_maxrss" and result.precision == "fp32"
    assert not any(p.requires_grad for p in model.parameters())


def test_full_ft_same_seed_same_weights():
    x, y = toy_set()
    cfg = TrainConfig(steps=6, lr=1e-3, weight_decay=0.1)
    a, _ = finetune_classifier(ft_model(), batches_of(x, y, 8), config=cfg, generator=gen(), device=CPU)
    b, _ = finetune_classifier(ft_model(), batches_of(x, y, 8), config=cfg, generator=gen(), device=CPU)
    assert_same_weights(a, b)
    c, _ = finetune_classifier(ft_model(seed=1), batches_of(x, y, 8), config=cfg, generator=gen(), device=CPU)
    assert not torch.equal(a.head.weight, c.head.weight)


def test_gradient_accumulation_equals_the_full_batch_step():
    x, y = toy_set()
    cfg = TrainConfig(steps=1, lr=0.5, optimizer="sgd", momentum=0.0)  # SGD: the update is linear in the grads
    full, _ = finetune_classifier(ft_model(), [(x, y)], config=cfg, generator=gen(), device=CPU)
    parts, res = finetune_classifier(
        ft_model(), [(x, y)], config=TrainConfig(**{**cfg.__dict__, "micro_batch": 8}), generator=gen(), device=CPU
    )
    assert res.micro_batch == 8
    assert_close_weights(full, parts, atol=1e-6)
    assert not torch.equal(full.head.weight, ft_model().head.weight)  # the step did move the weights


class OomOnce(ImageClassifier):
    """Raises torch.OutOfMemoryError the first time it sees more than `limit` images."""

    def __init__(self, base: ImageClassifier, limit: int) -> None:
        super().__init__(base.clip, base.head)
        self.limit, self.raised = limit, 0

    def forward(self, x):
        if len(x) > self.limit and not self.raised:
            self.raised += 1
            raise torch.OutOfMemoryError("fake: out of memory")
        return super().forward(x)


def test_out_of_memory_halves_the_micro_batch_and_retries_the_step():
    x, y = toy_set()
    cfg = TrainConfig(steps=3, lr=0.1, optimizer="sgd", micro_batch=16)
    fake = OomOnce(ft_model(), limit=8)
    with pytest.warns(UserWarning, match="micro-batches of 8"):
        trained, result = finetune_classifier(fake, [(x, y)], config=cfg, generator=gen(), device=CPU)
    assert fake.raised == 1 and result.micro_batch == 8
    direct, _ = finetune_classifier(
        ft_model(), [(x, y)], config=TrainConfig(**{**cfg.__dict__, "micro_batch": 8}), generator=gen(), device=CPU
    )
    assert_same_weights(ImageClassifier(trained.clip, trained.head), direct)


def test_out_of_memory_at_one_image_is_a_clear_error():
    class AlwaysOom(ImageClassifier):
        def forward(self, x):
            raise torch.OutOfMemoryError("fake")

    base = ft_model()
    x, y = toy_set(1)
    with pytest.raises(OodbenchError, match="one image at a time"), pytest.warns(UserWarning):
        finetune_classifier(
            AlwaysOom(base.clip, base.head), [(x, y)], config=TrainConfig(steps=1, lr=0.1), generator=gen(), device=CPU
        )


def test_exhausted_one_shot_iterator_is_a_clear_error():
    x, y = toy_set()
    once = iter(batches_of(x, y, 8))
    with pytest.raises(OodbenchError, match="re-iterable"):
        finetune_classifier(ft_model(), once, config=TrainConfig(steps=3, lr=1e-3), generator=gen(), device=CPU)


# -- LP-FT ---------------------------------------------------------------------------------------------------


def test_probe_weights_reproduce_sklearn_on_raw_features():
    """The returned head acts on raw features; it must give the probabilities sklearn gives on LP-FT's
    standardised features (an independent check of the inverse standardisation)."""
    from sklearn.linear_model import LogisticRegression

    g = gen(4)
    y = torch.arange(3).repeat_interleave(10)
    feats = torch.randn(30, 6, generator=g) * 3 + 5 + y[:, None].float() * torch.tensor([1.0, -1, 0, 0, 0, 0.5])
    fit = fit_linear_probe(feats, y, None, None, num_classes=3, config=ProbeConfig(default_c=0.5), generator=gen())
    x = feats.double().numpy()
    mean, std = x.mean(), x.std()
    clf = LogisticRegression(C=0.5, max_iter=200).fit((x - mean) / std, y.numpy())
    ours = torch.softmax(feats @ fit.weight.T + fit.bias, dim=1).numpy()
    np.testing.assert_allclose(ours, clf.predict_proba((x - mean) / std), atol=1e-5)
    assert fit.c == 0.5 and fit.val_acc is None


def test_probe_sweeps_c_on_validation_and_handles_two_classes():
    g = gen(5)
    y = torch.tensor([0, 1] * 10)
    feats = torch.randn(20, 4, generator=g) + 3 * y[:, None].float()
    vy = torch.tensor([0, 1] * 5)
    vfeats = torch.randn(10, 4, generator=g) + 3 * vy[:, None].float()
    fit = fit_linear_probe(feats, y, vfeats, vy, num_classes=3, config=ProbeConfig(num_c=5), generator=gen())
    assert fit.weight.shape == (3, 4) and torch.equal(fit.weight[2], torch.zeros(4))  # class 2 absent: zero row
    assert fit.val_acc == 1.0 and fit.c in np.logspace(-7, 2, 5)
    pred = (feats @ fit.weight[:2].T + fit.bias[:2]).argmax(1)
    assert torch.equal(pred, y)
    torch.testing.assert_close(fit.weight[0], -fit.weight[1])  # sklearn's one row w became [-w/2, w/2]


def test_lp_ft_starts_from_the_probe_and_fine_tunes():
    x, y = toy_set()
    clip = tiny_clip()
    with torch.no_grad():
        feats = clip.encode_image(x)
    cfg = TrainConfig(steps=4, lr=1e-3, optimizer="sgd", schedule="cosine", steps_per_tick=2)
    model, fit, result = lp_ft(
        clip,
        batches_of(x, y, 8),
        train_features=feats,
        train_labels=y,
        val_features=feats,
        val_labels=y,
        num_classes=len(CLASSNAMES),
        probe=ProbeConfig(num_c=4),
        config=cfg,
        generator=gen(),
        device=CPU,
    )
    assert not model.head.normalize  # LP-FT's head reads raw features
    assert result.extra["probe_c"] == fit.c and len(result.losses) == 4
    assert not torch.equal(model.head.weight, fit.weight)  # the FT phase moved the probe


# -- FLYP ----------------------------------------------------------------------------------------------------


def test_clip_contrastive_loss_by_hand():
    img = F.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8]]), dim=-1)
    txt = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=-1)
    s = torch.tensor(2.0)
    logits = s * img @ txt.T  # [[2, 0], [1.2, 1.6]]
    row = -(torch.log_softmax(logits, 1)[0, 0] + torch.log_softmax(logits, 1)[1, 1]) / 2
    col = -(torch.log_softmax(logits.T, 1)[0, 0] + torch.log_softmax(logits.T, 1)[1, 1]) / 2
    torch.testing.assert_close(clip_contrastive_loss(img, txt, s), (row + col) / 2)


def flyp_run(micro: int | None, steps: int = 1, optimizer: str = "sgd", seed: int = 0):
    x, y = toy_set()
    cfg = TrainConfig(steps=steps, lr=0.5 if optimizer == "sgd" else 1e-3, optimizer=optimizer, micro_batch=micro)
    return flyp_finetune(
        tiny_clip(),
        [(x, y)],
        classnames=CLASSNAMES,
        templates=TEMPLATES,
        tokenizer=TOKENIZER,
        config=cfg,
        generator=gen(seed),
        device=CPU,
    )


def test_flyp_gradient_cache_equals_the_full_batch_step():
    full, _ = flyp_run(None)
    parts, res = flyp_run(4)
    assert res.micro_batch == 4
    assert_close_weights(full, parts, atol=1e-6)
    assert not torch.equal(full.logit_scale, tiny_clip().logit_scale)  # FLYP trains the logit scale too


def test_flyp_trains_both_encoders_and_is_seeded():
    a, result = flyp_run(None, steps=8, optimizer="adamw")
    b, _ = flyp_run(None, steps=8, optimizer="adamw")
    assert_same_weights(a, b)
    ref = tiny_clip().state_dict()
    changed = {k.split(".")[0] for k, v in a.state_dict().items() if not torch.equal(v, ref[k])}
    assert {"visual", "transformer", "token_embedding", "logit_scale"} <= changed
    assert np.mean(result.losses[-3:]) < result.losses[0]
    c, _ = flyp_run(None, steps=8, optimizer="adamw", seed=1)  # other captions drawn
    assert not torch.equal(a.visual.conv1.weight, c.visual.conv1.weight)


# -- CLIP-LoRA loop ------------------------------------------------------------------------------------------


def lora_run(micro: int | None, spec: LoraSpec, steps: int = 1, lr: float = 0.5, optimizer: str = "sgd"):
    x, y = toy_set()
    model = tiny_clip()
    apply_lora(model, spec=spec, generator=gen())
    cfg = TrainConfig(steps=steps, lr=lr, optimizer=optimizer, micro_batch=micro, schedule="cosine", min_lr=1e-6)
    return clip_lora_finetune(
        model,
        batches_of(x, y, 16),
        classnames=CLASSNAMES,
        template=TEMPLATES[0],
        tokenizer=TOKENIZER,
        logit_scale=100.0,
        config=cfg,
        generator=gen(),
        device=CPU,
    )


def test_clip_lora_accumulation_equals_the_full_batch_step():
    spec = LoraSpec(dropout=0.0)
    full, _ = lora_run(None, spec)
    parts, _ = lora_run(4, spec)
    for (n, a), (_, b) in zip(lora_state_dict(full).items(), lora_state_dict(parts).items(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=n)
    assert any(v.abs().max() > 0 for k, v in lora_state_dict(full).items() if "lora_B" in k)


def test_clip_lora_trains_only_adapters_and_reduces_loss():
    model, result = lora_run(None, LoraSpec(), steps=20, lr=2e-2, optimizer="adamw")
    assert np.mean(result.losses[-5:]) < 0.7 * result.losses[0]
    ref = tiny_clip().state_dict()
    merged = merge_lora(model).state_dict()
    changed = {k for k, v in merged.items() if not torch.equal(v, ref[k])}
    assert changed and all(k.endswith("attn.in_proj_weight") for k in changed)
    assert not any(isinstance(m, LoraAttention) for m in model.modules())


# -- WiSE-FT -------------------------------------------------------------------------------------------------


def wise_pair():
    zs = {"w": torch.tensor([1.0, 2.0]), "same": torch.tensor([3.0]), "steps": torch.tensor([1]), "h": torch.ones(2)}
    ft = {"w": torch.tensor([3.0, -2.0]), "same": torch.tensor([3.0]), "steps": torch.tensor([7]), "h": torch.zeros(2)}
    return zs, ft


def test_wise_ft_endpoints_are_exact_and_midpoint_by_hand():
    model = ft_model()
    zs = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = toy_set()
    tuned, _ = finetune_classifier(
        model, batches_of(x, y, 8), config=TrainConfig(steps=3, lr=1e-2), generator=gen(), device=CPU
    )
    ft = tuned.state_dict()
    for alpha, want in ((0.0, zs), (1.0, ft)):
        got = wise_ft_interpolate(zs, ft, alpha=alpha)
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    a, b = wise_pair()
    mid = wise_ft_interpolate(a, b, alpha=0.25)
    assert torch.equal(mid["w"], torch.tensor([1.5, 1.0]))
    assert torch.equal(mid["h"], torch.tensor([0.75, 0.75]))
    assert torch.equal(mid["same"], torch.tensor([3.0]))
    assert torch.equal(mid["steps"], torch.tensor([7]))  # integer buffers come from the fine-tuned side


def test_wise_ft_mismatches_are_clear_errors():
    a, b = wise_pair()
    with pytest.raises(OodbenchError, match="only in the fine-tuned"):
        wise_ft_interpolate(a, {**b, "extra": torch.zeros(1)}, alpha=0.5)
    with pytest.raises(OodbenchError, match="only in the zero-shot"):
        wise_ft_interpolate(a, {k: v for k, v in b.items() if k != "w"}, alpha=0.5)
    with pytest.raises(OodbenchError, match="same architecture"):
        wise_ft_interpolate(a, {**b, "w": torch.zeros(3)}, alpha=0.5)
    with pytest.raises(OodbenchError, match="finite"):
        wise_ft_interpolate(a, b, alpha=float("nan"))


# -- augmentation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["wise_ft", "clip_lora", "lp_ft", "none"])
def test_augmentations_are_seeded_and_leave_the_global_generator_alone(name):
    from PIL import Image

    pics = [Image.fromarray(np.uint8(np.arange(28 * 28).reshape(28, 28) % 251)) for _ in range(3)]
    tf = train_transform(name, image_size=14, mean=(0.5,) * 3, std=(0.25,) * 3)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = augment_batch(pics, tf, generator=gen(7))
    assert torch.equal(torch.random.get_rng_state(), before)
    b = augment_batch(pics, tf, generator=gen(7))
    assert a.shape == (3, 3, 14, 14) and torch.equal(a, b)
    if name != "none":
        assert not torch.equal(a, augment_batch(pics, tf, generator=gen(8)))
    with pytest.raises(OodbenchError, match="Unknown augmentation"):
        train_transform("mixup", image_size=14, mean=(0.5,) * 3, std=(0.25,) * 3)
