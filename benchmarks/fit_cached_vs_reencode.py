"""Time training on cached features against the same training re-encoding images every step.

Methods that keep the image encoder frozen train on cached features (and cached augmented views);
the alternative, what the papers' code does, pushes every training batch through the image encoder
again, with a fresh random crop and flip. This script runs both in one process on the demo suite
and reports the median fit time of each (over --repeats), their ratio, and then the fit time of
every registered method that trains, on cached features.

    python benchmarks/fit_cached_vs_reencode.py --methods coop,clip_adapter --shots 16 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmark.backbones import DEMO_BACKBONE
from benchmark.encoders import augment_views, view_kind
from benchmark.features import extract_features, text_features
from benchmark.fewshot import fewshot_split
from benchmark.harness import Harness, seed_everything
from benchmark.suites import SUITES
from methods import load_methods
from methods.base import METHODS, FeatureBatch, FitData, MethodContext, make_config


def build(harness: Harness, *, suite_name: str, shots: int, views: int, cache_dir: Path):
    suite = SUITES.get(suite_name)
    backbone = harness.backbone(DEMO_BACKBONE, torch.device("cpu"), cache_dir)
    pool = harness.dataset(suite.pool, suite, None)
    split = fewshot_split(pool.labels, shots=shots, seed=1, pool_sha256=pool.list_sha256)

    def feats(kind: str) -> torch.Tensor:
        return torch.from_numpy(
            np.asarray(extract_features(backbone, pool, cache_dir=cache_dir, kind=kind).array, np.float32)
        )

    g, loc, v = feats("global"), feats("local"), feats(view_kind(views))
    labels = torch.from_numpy(pool.labels)
    data = FitData(
        train=FeatureBatch(
            global_=g[split.train], local=loc[split.train], views=v[split.train].transpose(0, 1).contiguous()
        ),
        labels=labels[split.train],
        val=FeatureBatch(global_=g[split.val], local=loc[split.val]),
        val_labels=labels[split.val],
        shots=shots,
    )
    images = torch.stack([backbone.preprocess(pool.get_image(int(i))) for i in split.train])
    text = text_features(backbone, suite.class_names(), suite.prompt_templates(), cache_dir=cache_dir)
    return suite, backbone, data, images, text


def make(name: str, suite, backbone, text, overrides: dict):
    cls = METHODS.get(name)
    fields = {f for f in cls.Config.__dataclass_fields__}
    cfg = make_config(cls, {k: v for k, v in overrides.items() if k in fields})
    ctx = MethodContext(
        backbone=backbone,
        classnames=suite.class_names(),
        templates=suite.prompt_templates(),
        text_features=text,
        device=torch.device("cpu"),
        generator=seed_everything(1),
        seed=1,
    )
    return cls(config=cfg, context=ctx)


def timed_fit(method, data: FitData) -> float:
    t = time.perf_counter()
    with torch.enable_grad():
        method.fit(data)
    return time.perf_counter() - t


def reencoding_pick(backbone, images: torch.Tensor):
    """A stand-in for methods.common.pick_views that encodes a fresh random crop + flip of each image."""

    def pick(train: FeatureBatch, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        seeds = torch.randint(0, 2**31 - 1, (len(idx),), generator=generator).tolist()
        batch = torch.cat([augment_views(images[int(i)], 1, seed=s) for i, s in zip(idx, seeds, strict=False)])
        with torch.no_grad():
            return backbone.model.encode_image(batch).float()

    return pick


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="coop,clip_adapter", help="methods timed both ways (they use pick_views)")
    ap.add_argument("--shots", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=0, help="override the methods' epochs (0: their defaults)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 suits the tiny demo model)")
    ap.add_argument("--cache-dir", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_methods()
    cache_dir = args.cache_dir or Path(tempfile.mkdtemp(prefix="oodbench-bench-"))
    overrides = {"epochs": args.epochs} if args.epochs else {}
    harness = Harness()
    suite, backbone, data, images, text = build(
        harness, suite_name="fmnist-ood", shots=args.shots, views=10, cache_dir=cache_dir
    )
    print(
        f"demo suite, {args.shots} shots ({len(data.labels)} images), {args.threads} thread(s), "
        f"median of {args.repeats} repeats"
    )
    print(f"{'method':<14}{'cached s':>10}{'re-encode s':>13}{'ratio':>8}")
    for name in args.methods.split(","):
        module = __import__(METHODS.get(name).__module__, fromlist=["pick_views"])
        if not hasattr(module, "pick_views"):
            raise SystemExit(f"{name} does not draw training features through pick_views; pick another method.")
        cached, reencoded = [], []
        for _ in range(args.repeats):
            cached.append(timed_fit(make(name, suite, backbone, text, overrides), data))
            original = module.pick_views
            module.pick_views = reencoding_pick(backbone, images)
            try:
                reencoded.append(timed_fit(make(name, suite, backbone, text, overrides), data))
            finally:
                module.pick_views = original
        c, r = statistics.median(cached), statistics.median(reencoded)
        print(f"{name:<14}{c:>10.2f}{r:>13.2f}{r / c:>7.1f}x")
    print(f"\nfit time of every method that trains, on cached features ({args.shots} shots):")
    for name in METHODS.names():
        if METHODS.get(name).trains:
            print(f"{name:<14}{timed_fit(make(name, suite, backbone, text, overrides), data):>10.2f} s")


if __name__ == "__main__":
    main()
