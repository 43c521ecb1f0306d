"""The shared training loop against the reference schedules, and view sampling.

Dassl's schedule is rebuilt here from PyTorch's own CosineAnnealingLR stepped once per epoch after a
constant warm-up (KaiyangZhou/Dassl.pytorch dassl/optim/lr_scheduler.py:L27-54, L128-141), Tip-Adapter-F's
from CosineAnnealingLR stepped after every batch (gaopengcuhk/Tip-Adapter main_imagenet.py:L53)."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark.errors import OodbenchError
from methods.base import FeatureBatch
from methods.shared.training import batches, pick_views, pick_views_with_local, train


def _run(*, n: int, epochs: int, batch_size: int, schedule: str, warmup_epochs: int = 0):
    w = torch.nn.Parameter(torch.zeros(3))
    sizes: list[int] = []
    lrs: list[float] = []

    def loss(idx: torch.Tensor) -> torch.Tensor:
        sizes.append(len(idx))
        return ((w - 1) ** 2).sum()

    train(
        params=[w],
        loss_fn=loss,
        n=n,
        epochs=epochs,
        batch_size=batch_size,
        lr=0.002,
        generator=torch.Generator().manual_seed(0),
        schedule=schedule,
        warmup_epochs=warmup_epochs,
        lr_log=lrs,
    )
    return sizes, lrs


def reference_dassl_lrs(epochs: int, warmup_epochs: int, batches_per_epoch: int, lr: float) -> list[float]:
    """Per step: warm-up epochs at 1e-5, then what CosineAnnealingLR(MAX_EPOCH) gives, stepped after each epoch."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, float(epochs))
    out = []
    for epoch in range(epochs):
        rate = 1e-5 if epoch < warmup_epochs else opt.param_groups[0]["lr"]
        out += [rate] * batches_per_epoch
        opt.step()  # (no gradient: nothing moves) keeps the scheduler's step order
        if epoch >= warmup_epochs:
            cosine.step()
    return out


@pytest.mark.parametrize("warmup", [1, 0])
def test_dassl_schedule_is_per_epoch_cosine_after_a_warmup_epoch_and_never_zero(warmup):
    sizes, lrs = _run(n=70, epochs=6, batch_size=32, schedule="dassl", warmup_epochs=warmup)
    assert sizes == [32, 32] * 6  # 70 images: the partial batch of 6 is dropped every epoch
    expected = reference_dassl_lrs(6, warmup, 2, 0.002)
    assert lrs == pytest.approx(expected, rel=1e-9)
    assert min(lrs) > 0
    if warmup:
        assert lrs[:2] == [1e-5, 1e-5] and lrs[2] == pytest.approx(0.002)  # epoch 1 starts the cosine at lr
        assert lrs[-1] == pytest.approx(0.001 * (1 + math.cos(math.pi * 4 / 6)))  # last epoch: (E - 2) / E


def test_dassl_keeps_a_split_smaller_than_one_batch():
    sizes, _ = _run(n=20, epochs=2, batch_size=32, schedule="dassl")
    assert sizes == [20, 20]  # drop_last only when len(data) >= batch_size


def test_step_cosine_keeps_the_last_partial_batch_and_anneals_every_step():
    sizes, lrs = _run(n=70, epochs=3, batch_size=32, schedule="step_cosine")
    assert sizes == [32, 32, 6] * 3
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=0.002)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 9)
    expected = []
    for _ in range(9):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_unknown_schedule_is_a_clear_error():
    with pytest.raises(OodbenchError, match="schedule"):
        _run(n=4, epochs=1, batch_size=2, schedule="linear")


def test_batches_cover_every_image_once_per_epoch():
    got = batches(10, 4, torch.Generator().manual_seed(1))
    assert sorted(torch.cat(got).tolist()) == list(range(10)) and [len(b) for b in got] == [4, 4, 2]
    dropped = batches(10, 4, torch.Generator().manual_seed(1), drop_last=True)
    assert [len(b) for b in dropped] == [4, 4]


def _train_batch(views: int = 3, n: int = 5, patches: int = 2) -> FeatureBatch:
    g = torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 4)  # plain rows: 0, 1, 2, ...
    v = 100 * (1 + torch.arange(views, dtype=torch.float32))[:, None, None] + g[None]  # view k of image i: 100(k+1)+i
    lv = v[:, :, None, :].repeat(1, 1, patches, 1) + 0.5  # patch tokens of the same view: that value + 0.5
    return FeatureBatch(global_=g, views=v, local=g[:, None].repeat(1, patches, 1), local_views=lv.half())


def test_view_sampling_never_picks_the_unaugmented_image_and_uses_every_view():
    train_batch = _train_batch()
    gen = torch.Generator().manual_seed(0)
    idx = torch.tensor([0, 1, 2, 3, 4])
    seen = set()
    for _ in range(50):
        picked = pick_views(train_batch, idx, gen)[:, 0]
        view = torch.round(picked / 100) - 1  # which view each row came from
        assert torch.equal(picked - 100 * (view + 1), idx.float())  # row i is a view of image i
        assert (view >= 0).all()  # never the plain image (whose rows are < 100)
        seen |= set(view.int().tolist())
    assert seen == {0, 1, 2}
    plain = FeatureBatch(global_=train_batch.global_)
    assert torch.equal(pick_views(plain, idx, gen), plain.global_)


def test_global_and_patch_features_come_from_the_same_view():
    train_batch = _train_batch()
    glob, local = pick_views_with_local(train_batch, torch.tensor([4, 0, 2]), torch.Generator().manual_seed(3))
    assert local.dtype == torch.float32 and local.shape == (3, 2, 4)
    assert torch.equal(local, glob[:, None].expand(-1, 2, -1) + 0.5)
    with pytest.raises(OodbenchError, match="local_views"):
        pick_views_with_local(
            FeatureBatch(global_=train_batch.global_, views=train_batch.views),
            torch.tensor([0]),
            torch.Generator(),
        )
