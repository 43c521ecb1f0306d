"""Where the time goes: a method that fine-tunes the image encoder against one that trains on frozen features.

Both run through the harness's own stages on the demo suite, each repeat in a fresh cache folder (so that
nothing of an earlier repeat is reused: no stage cache, no tuned-feature cache), and every stage is timed:

- features:   encoding the frozen features the run reads (shared work, once per backbone and dataset; not
              counted in a method's cost)
- fit:        the method's fit, split for the tuned method into image decoding, augmentation, and the
              training steps themselves (forward, backward, optimizer; run_steps minus what its batches cost)
- re-encode:  the tuned method's test sets encoded again with its tuned model (decode + forward of every
              test image; part of predict's cost in the rows)
- predict:    the method's predict over the interleaved test stream
- scoring:    every score, metric and bootstrap interval (`Harness.rows`)

Medians over --repeats; run it under `nice -n 10`:

    nice -n 10 python benchmarks/tuning_cost.py --tuned full_ft --frozen coop --shots 16 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch

import benchmark.splitimages as splitimages
import methods.shared.finetune as finetune
import methods.shared.tuning as tuning
from benchmark.backbones import DEMO_BACKBONE
from benchmark.config import Execution, RunKey
from benchmark.harness import Harness
from benchmark.provenance import measure
from benchmark.tuned import StageCache
from methods.base import tunes_encoders

SUITE = "fmnist-ood"
STAGES = ("features", "fit", "fit: decode", "fit: augment", "fit: train steps", "re-encode", "predict", "scoring")


class Timers:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, name: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - t

        return timed


@contextmanager
def instrumented(timers: Timers):
    """Time image decoding, augmentation and the training loop of encoder-tuning methods, and switch the stage
    cache off (every repeat trains)."""
    saved = (splitimages.SplitImages.image, tuning.augment_batch, finetune.run_steps, Harness.stage_cache)
    splitimages.SplitImages.image = timers.wrap("fit: decode", saved[0])
    tuning.augment_batch = timers.wrap("fit: augment", saved[1])
    finetune.run_steps = timers.wrap("run_steps", saved[2])
    Harness.stage_cache = lambda self, resolved, prepared: StageCache(None, {})
    try:
        yield
    finally:
        splitimages.SplitImages.image, tuning.augment_batch, finetune.run_steps, Harness.stage_cache = saved


def one_run(method: str, *, shots: int, config: dict, device: str) -> dict[str, float]:
    timers = Timers()
    with tempfile.TemporaryDirectory(prefix="oodbench-tuning-cost-") as tmp, instrumented(timers):
        harness = Harness()
        key = RunKey(suite=SUITE, backbone=DEMO_BACKBONE, method=method, config=config, shots=shots, seed=1)
        execution = Execution(device=device, cache_dir=Path(tmp))
        resolved = harness.resolve(key)
        prepared = harness.prepare(resolved, execution)
        harness.backbone(DEMO_BACKBONE, prepared.device, prepared.cache_dir)  # loading is not a stage
        t = time.perf_counter()
        features = harness.features(resolved, prepared)
        timers.seconds["features"] = time.perf_counter() - t
        with measure(prepared.device) as fit_cost:
            fitted = harness.fit(resolved, prepared, features)
        timers.seconds["fit"] = fit_cost.seconds
        if tunes_encoders(resolved.method_cls):
            t = time.perf_counter()
            features = harness.reencode(resolved, prepared, fitted).features
            timers.seconds["re-encode"] = time.perf_counter() - t
            inside = timers.seconds["fit: decode"] + timers.seconds["fit: augment"]
            timers.seconds["fit: train steps"] = timers.seconds.pop("run_steps") - inside
        t = time.perf_counter()
        outputs = harness.outputs(resolved, prepared, fitted, features)
        timers.seconds["predict"] = time.perf_counter() - t
        t = time.perf_counter()
        harness.rows(resolved, prepared, outputs, run_id="0" * 32)
        timers.seconds["scoring"] = time.perf_counter() - t
        timers.seconds["peak memory (MB)"] = fit_cost.peak_memory_mb
    return dict(timers.seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tuned", default="full_ft", help="a method that tunes the encoders")
    parser.add_argument("--frozen", default="coop", help="a method that trains on frozen features")
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--config", action="append", default=[], help="method=key=value, e.g. clip_lora=iters_per_shot=50"
    )
    parser.add_argument("--json", type=Path, help="also write the medians here")
    args = parser.parse_args()
    configs: dict[str, dict] = {args.tuned: {}, args.frozen: {}}
    for item in args.config:
        method, _, rest = item.partition("=")
        k, _, v = rest.partition("=")
        configs.setdefault(method, {})[k] = json.loads(v)
    print(f"torch threads: {torch.get_num_threads()}; device {args.device}; {args.shots} shots; {args.repeats} repeats")
    medians: dict[str, dict[str, float]] = {}
    for method in (args.frozen, args.tuned):
        runs = [
            one_run(method, shots=args.shots, config=configs[method], device=args.device) for _ in range(args.repeats)
        ]
        medians[method] = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in runs[0]}
    names = [s for s in (*STAGES, "peak memory (MB)") if any(s in m for m in medians.values())]
    width = max(map(len, names)) + 2
    print(f"{'median seconds':<{width}}" + "".join(f"{m:>14}" for m in medians))
    for name in names:
        print(f"{name:<{width}}" + "".join(f"{medians[m].get(name, 0.0):>14.2f}" for m in medians))
    cost = {m: v["fit"] + v.get("re-encode", 0.0) + v["predict"] for m, v in medians.items()}
    print(f"{'method cost (fit + re-encode + predict)':<{width}}" + "".join(f"{cost[m]:>14.2f}" for m in medians))
    if args.json:
        args.json.write_text(json.dumps({"medians": medians, "args": vars(args) | {"json": str(args.json)}}, indent=2))


if __name__ == "__main__":
    main()
