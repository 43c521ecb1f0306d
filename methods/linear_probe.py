"""Linear probe (Radford et al., ICML 2021, Sec. 3.2): logistic regression on frozen features.

L2-normalised image features, scikit-learn's L-BFGS logistic regression; the inverse
regularisation strength C is chosen by ID accuracy on the validation part of the pool: a
logarithmic sweep, then a finer sweep around the best value (the paper's search over
lambda in [1e-6, 1e6] followed by a parametric binary search). `logits / logit_scale` divides the
probe's logits by CLIP's logit scale, so MCM softmaxes them at the temperature CLIP's own head uses.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from methods.base import METHODS, FeatureBatch, FitData, Method, MethodConfig, MethodOutput, l2_normalize, param
from methods.shared.training import head_output


@dataclass(frozen=True)
class LinearProbeConfig(MethodConfig):
    c_min_log10: float = param(-6.0, low=-12.0, high=12.0)  # CLIP: sweep lambda = 1/C over [1e-6, 1e6]
    c_max_log10: float = param(6.0, low=-12.0, high=12.0)
    coarse_steps: int = param(7, low=2, high=100)  # 1e-6, 1e-4, ..., 1e6
    refine_steps: int = param(8, low=1, high=100)  # then this many values between the best coarse value's neighbours
    max_iter: int = param(1000, low=1, high=100000)
    default_c: float = param(0.316, low=1e-12, high=1e12)  # used when the pool leaves no validation images


@METHODS.register("linear_probe")
class LinearProbe(Method):
    Config = LinearProbeConfig
    paper = (
        "Radford et al. Learning Transferable Visual Models From Natural Language Supervision "
        "(linear-probe protocol, Sec. 3.2). ICML 2021."
    )

    def __init__(self, *, config: LinearProbeConfig, context) -> None:
        super().__init__(config=config, context=context)
        self.weight: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None
        self.c_value = config.default_c

    def _fit_lr(self, x: np.ndarray, y: np.ndarray, c: float):
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=c, max_iter=self.config.max_iter)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return clf.fit(x, y)

    def choose_c(self, x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray) -> float:
        """C with the best validation accuracy (ties: lower validation log-loss): a coarse log sweep,
        then a finer one around the best."""
        from sklearn.metrics import log_loss

        cfg = self.config

        def best_of(cs: np.ndarray) -> tuple[float, int]:
            keys = []
            for c in cs:
                clf = self._fit_lr(x, y, float(c))
                acc = float((clf.predict(xv) == yv).mean())
                keys.append((acc, -log_loss(yv, clf.predict_proba(xv), labels=clf.classes_)))
            i = max(range(len(cs)), key=lambda k: keys[k])  # ties in accuracy go to the lower validation loss
            return keys[i][0], i

        coarse = np.logspace(cfg.c_min_log10, cfg.c_max_log10, cfg.coarse_steps)
        _, i = best_of(coarse)
        lo, hi = coarse[max(0, i - 1)], coarse[min(len(coarse) - 1, i + 1)]
        fine = np.logspace(np.log10(lo), np.log10(hi), cfg.refine_steps)
        _, j = best_of(fine)
        return float(fine[j])

    def fit(self, data: FitData) -> None:
        x = l2_normalize(data.train.global_).cpu().numpy()
        y = data.labels.cpu().numpy()
        n_classes = self.ctx.text_features.shape[0]
        if len(data.val_labels):
            xv = l2_normalize(data.val.global_).cpu().numpy()
            self.c_value = self.choose_c(x, y, xv, data.val_labels.cpu().numpy())
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
        return l2_normalize(feats) @ self.weight.T + self.bias

    def predict(self, batch: FeatureBatch) -> MethodOutput:
        return head_output(self.head, batch, logit_scale=self.ctx.backbone.logit_scale)
