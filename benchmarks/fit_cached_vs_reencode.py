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

import torch

from benchmark.backbones import DEMO_BACKBONE
from benchmark.config import Execution, RunKey
from benchmark.encoders import DASSL_CROP_SCALE, view_transform
from benchmark.harness import Harness
from methods import load_methods
from methods.base import METHODS, FeatureBatch, FitData, fits_split, tunes_encoders

SUITE = "fmnist-ood"


def stages(harness: Harness, name: str, *, shots: int, overrides: dict, execution: Execution):
    """The harness's own stages up to fit: (method ready to fit, its FitData, the split's decoded images)."""
    fields = set(METHODS.get(name).Config.__dataclass_fields__)
    key = RunKey(
        suite=SUITE,
        backbone=DEMO_BACKBONE,
        method=name,
        shots=shots,
        seed=1,
        config={k: v for k, v in overrides.items() if k in fields},
    )
    resolved = harness.resolve(key)
    prepared = harness.prepare(resolved, execution)
    features = harness.features(resolved, prepared)
    pool = prepared.datasets[resolved.suite.pool]
    backbone = harness.backbone(DEMO_BACKBONE, prepared.device, prepared.cache_dir)
    images = [pool.get_image(int(i)) for i in prepared.split.train]
    return harness.build_method(resolved, prepared), harness.fit_data(resolved, prepared, features), images, backbone


def timed_fit(method, data: FitData) -> float:
    t = time.perf_counter()
    with torch.enable_grad():
        method.fit(data)
    return time.perf_counter() - t


def reencoding_pick(backbone, images: list, crop_scale: tuple[float, float]):
    """A stand-in for methods.shared.training.pick_views that encodes a fresh random crop + flip of each raw image,
    as the reference code does at every step."""
    transform = view_transform(backbone, views=1, scale=crop_scale)

    def pick(train: FeatureBatch, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        seeds = torch.randint(0, 2**31 - 1, (len(idx),), generator=generator).tolist()
        batch = torch.cat([transform.views_of(images[int(i)], seed=s) for i, s in zip(idx, seeds, strict=False)])
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
    execution = Execution(device="cpu", cache_dir=cache_dir)
    print(f"demo suite, {args.shots} shots, {args.threads} thread(s), median of {args.repeats} repeats")
    print(f"{'method':<14}{'cached s':>10}{'re-encode s':>13}{'ratio':>8}")
    for name in args.methods.split(","):
        module = __import__(METHODS.get(name).__module__, fromlist=["pick_views"])
        if not hasattr(module, "pick_views"):
            raise SystemExit(f"{name} does not draw training features through pick_views; pick another method.")
        cached, reencoded = [], []
        for _ in range(args.repeats):
            method, data, images, backbone = stages(
                harness, name, shots=args.shots, overrides=overrides, execution=execution
            )
            cached.append(timed_fit(method, data))
            method, data, images, backbone = stages(
                harness, name, shots=args.shots, overrides=overrides, execution=execution
            )
            original = module.pick_views
            module.pick_views = reencoding_pick(
                backbone, images, getattr(method.config, "crop_scale", DASSL_CROP_SCALE)
            )
            try:
                reencoded.append(timed_fit(method, data))
            finally:
                module.pick_views = original
        c, r = statistics.median(cached), statistics.median(reencoded)
        print(f"{name:<14}{c:>10.2f}{r:>13.2f}{r / c:>7.1f}x")
    print(f"\nfit time of every few-shot method, on cached features ({args.shots} shots):")
    for name in METHODS.names():  # methods that tune the encoders: benchmarks/tuning_cost.py
        if fits_split(METHODS.get(name)) and not tunes_encoders(METHODS.get(name)):
            method, data, _, _ = stages(harness, name, shots=args.shots, overrides=overrides, execution=execution)
            print(f"{name:<14}{timed_fit(method, data):>10.2f} s")


if __name__ == "__main__":
    main()
