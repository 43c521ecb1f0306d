"""Linear probe (Radford et al., ICML 2021, Sec. 3.2): logistic regression on frozen features, as CoOp's
lpclip runs it (KaiyangZhou/CoOp lpclip/; docs/fidelity.md, section `linear_probe`).

Raw (not normalised) image features of the un-augmented image, scikit-learn's L-BFGS logistic
regression with an L2 penalty. The inverse regularisation strength C is chosen on validation images:
the coarse values 1e6, 1e4, ..., 1e-6 (the first best kept, i.e. ties go to the larger C), then a
binary search in log10 between C/10 and 10 C over `refine_steps` steps; the C kept by its last step is
used. `val_shots` validation images per class by shot count (lpclip's val_shot_list).

Departure, recorded: our suites have no separate val split, so the validation images are the first
`val_shots` images of each class in the validation part of the pool (which the few-shot split draws
at random, disjoint from the training images). `logits / logit_scale` divides the probe's logits by
CLIP's logit scale, so MCM softmaxes them at the temperature CLIP's own head uses (unverified: the
study that applies MCM to probes published no code).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from benchmark.errors import OodbenchError
from methods.base import METHODS, FeatureBatch, FitData, Method, MethodConfig, MethodOutput, l2_normalize, param
from methods.shared.training import head_output


@dataclass(frozen=True)
class LinearProbeConfig(MethodConfig):
    c_min_log10: float = param(-6.0, low=-12.0, high=12.0)  # lpclip's coarse C values 1e6, 1e4, ..., 1e-6
    c_max_log10: float = param(6.0, low=-12.0, high=12.0)
    coarse_steps: int = param(7, low=2, high=100)
    refine_steps: int = param(8, low=1, high=100)  # binary-search steps (linear_probe.sh: --num_step 8)
    max_iter: int = param(1000, low=1, high=100000)
    default_c: float = param(0.316, low=1e-12, high=1e12)  # used when the pool leaves no validation images
    normalize_features: bool = False  # lpclip fits raw image features
    # (shots, validation images per class): lpclip's val_shot_list {1: 1, 2: 2, 4: 4, 8: 4, 16: 4}
    val_shots: tuple[tuple[int, int], ...] = param(((1, 1), (2, 2), (4, 4), (8, 4), (16, 4)), low=1, high=10000)


def val_per_class(shots: int, table: tuple[tuple[int, int], ...]) -> int:
    """Validation images per class at `shots`: the entry of the largest listed shot count not above `shots`
    (the first entry below the smallest)."""
    ordered = sorted(table)
    chosen = ordered[0][1]
    for listed, n in ordered:
        if listed <= shots:
            chosen = n
    return chosen


def first_per_class(labels: np.ndarray, n: int) -> np.ndarray:
    """Positions of the first `n` entries of each class in `labels`, in their original order."""
    seen: dict[int, int] = {}
    keep = []
    for i, y in enumerate(labels.tolist()):
        if seen.get(y, 0) < n:
            seen[y] = seen.get(y, 0) + 1
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


@METHODS.register("linear_probe")
class LinearProbe(Method):
    Config = LinearProbeConfig
    paper = (
        "Radford et al. Learning Transferable Visual Models From Natural Language Supervision "
        "(linear-probe protocol, Sec. 3.2). ICML 2021."
    )

    def __init__(self, *, config: LinearProbeConfig, context) -> None:
        super().__init__(config=config, context=context)
        if not config.val_shots or any(k < 1 or n < 1 for k, n in config.val_shots):
            raise OodbenchError(
                f"val_shots must list (shots, validation images per class) pairs of positive whole numbers, "
                f"got {config.val_shots!r}."
            )
        self.weight: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None
        self.c_value = config.default_c

    def prepare_features(self, feats: torch.Tensor) -> torch.Tensor:
        """The features the probe reads: raw by default, L2-normalised with normalize_features."""
        return l2_normalize(feats) if self.config.normalize_features else feats.float()

    def _fit_lr(self, x: np.ndarray, y: np.ndarray, c: float):
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=c, max_iter=self.config.max_iter)  # lbfgs, L2 penalty: scikit-learn's defaults
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return clf.fit(x, y)

    def choose_c(self, x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray) -> float:
        """lpclip's search (KaiyangZhou/CoOp lpclip/linear_probe.py:L53-118): the best coarse value C (first
        best), then from [C/10, 10 C] each step fits both ends, keeps the better (ties: the left, smaller C)
        and halves the interval in log10 towards it. Returns the C kept by the last step."""
        cfg = self.config

        seen: dict[float, float] = {}  # the search revisits interval ends; a fit is deterministic

        def accuracy(c: float) -> float:
            if c not in seen:
                seen[c] = float((self._fit_lr(x, y, c).predict(xv) == yv).mean())
            return seen[c]

        coarse = np.logspace(cfg.c_max_log10, cfg.c_min_log10, cfg.coarse_steps)  # 1e6, 1e4, ..., 1e-6
        peak = float(coarse[int(np.argmax([accuracy(float(c)) for c in coarse]))])
        left, right = np.log10(peak) - 1.0, np.log10(peak) + 1.0
        chosen = peak
        for _ in range(cfg.refine_steps):
            mid = 0.5 * (left + right)
            if accuracy(10.0**left) < accuracy(10.0**right):
                chosen, left = 10.0**right, mid
            else:
                chosen, right = 10.0**left, mid
        return float(chosen)

    def fit(self, data: FitData) -> None:
        x = self.prepare_features(data.train.global_).cpu().numpy()
        y = data.labels.cpu().numpy()
        n_classes = self.ctx.text_features.shape[0]
        if len(data.val_labels):
            yv_all = data.val_labels.cpu().numpy()
            keep = first_per_class(yv_all, val_per_class(data.shots, self.config.val_shots))
            xv = self.prepare_features(data.val.global_).cpu().numpy()[keep]
            self.c_value = self.choose_c(x, y, xv, yv_all[keep])
        clf = self._fit_lr(x, y, self.c_value)
        weight = np.zeros((n_classes, x.shape[1]), np.float32)
        bias = np.full(n_classes, -1e4, np.float32)  # a class absent from the split is never predicted
        classes = clf.classes_.astype(int)
        if len(classes) == 2:  # sklearn stores one row for two classes: logit of class 1 against class 0
            weight[classes[1]], bias[classes[1]] = clf.coef_[0], clf.intercept_[0]
            weight[classes[0]], bias[classes[0]] = 0.0, 0.0
        else:
            weight[classes], bias[classes] = clf.coef_, clf.intercept_
        self.weight = torch.from_numpy(weight).to(self.ctx.device)
        self.bias = torch.from_numpy(bias).to(self.ctx.device)

    def head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.prepare_features(feats) @ self.weight.T + self.bias

    def predict(self, batch: FeatureBatch) -> MethodOutput:
        return head_output(self.head, batch, logit_scale=self.ctx.backbone.logit_scale)
