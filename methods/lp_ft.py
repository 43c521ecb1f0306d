"""LP-FT (Kumar, Raghunathan, Jones, Ma, Liang, ICLR 2022; AnanyaKumar/transfer_learning): a linear probe on
frozen features, then end-to-end fine-tuning of image encoder and probe head from there.

The probe is scikit-learn's logistic regression, warm-started along 50 values of C (1e-7 to 1e2), on the
split's cached (frozen, unaugmented) features standardised by one scalar mean and std; C is chosen on the
validation part of the pool. The head reads raw image features (LP-FT's CLIP model has only a linear layer
after encode_image). Fine-tuning: SGD with momentum, no weight decay, cosine annealing stepped once per
epoch, LP-FT's ImageNet settings. `logits / logit_scale` divides the head's logits by CLIP's logit scale, as
`linear_probe` does. docs/fidelity-tuning.md traces each default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from methods.base import METHODS, FeatureBatch, FitData, MethodConfig, MethodOutput, param
from methods.shared.augment import AUGMENTATIONS
from methods.shared.finetune import ProbeConfig, TrainConfig, lp_ft
from methods.shared.training import head_output
from methods.shared.tuning import TRAIN_PRECISIONS, HeadTuner, split_batches


@dataclass(frozen=True)
class LpFtConfig(MethodConfig):
    probe_c_min_log10: float = param(-7.0, low=-12.0, high=12.0)
    probe_c_max_log10: float = param(2.0, low=-12.0, high=12.0)
    probe_num_c: int = param(50, low=1, high=1000)
    probe_max_iter: int = param(200, low=1, high=100000)
    probe_default_c: float = param(1.0, low=1e-12, high=1e12, doc="used only when the pool leaves no validation")
    lr: float = param(1e-5, low=1e-10, high=1.0)
    momentum: float = param(0.9, low=0.0, high=1.0)
    weight_decay: float = param(0.0, low=0.0, high=10.0)
    batch_size: int = param(128, low=1, high=65536)
    epochs: int = param(10, low=1, high=1000)
    augmentation: str = param("lp_ft", choices=AUGMENTATIONS)
    precision: str = param("bf16", choices=TRAIN_PRECISIONS, doc="bf16 autocast on CUDA; a CPU trains in fp32")


@METHODS.register("lp_ft")
class LpFt(HeadTuner):
    Config = LpFtConfig
    name = "lp_ft"
    normalize_head = False
    paper = (
        "Kumar, Raghunathan, Jones, Ma, Liang. Fine-Tuning can Distort Pretrained Features and Underperform "
        "Out-of-Distribution. ICLR 2022."
    )

    def fit(self, data: FitData) -> None:
        c = self.config
        n = len(data.labels)
        per_epoch = math.ceil(n / c.batch_size)
        train = TrainConfig(
            steps=c.epochs * per_epoch,
            lr=c.lr,
            optimizer="sgd",
            momentum=c.momentum,
            weight_decay=c.weight_decay,
            schedule="cosine",
            steps_per_tick=per_epoch,
            min_lr=0.0,
            grad_clip=None,
            precision=c.precision,
        )
        probe = ProbeConfig(
            c_min_log10=c.probe_c_min_log10,
            c_max_log10=c.probe_c_max_log10,
            num_c=c.probe_num_c,
            max_iter=c.probe_max_iter,
            default_c=c.probe_default_c,
        )
        has_val = len(data.val_labels) > 0
        model, self.probe, _ = lp_ft(
            self.model,
            split_batches(self, data, batch_size=c.batch_size, augmentation=c.augmentation),
            train_features=data.train.global_.float(),
            train_labels=data.labels,
            val_features=data.val.global_.float() if has_val else None,
            val_labels=data.val_labels if has_val else None,
            num_classes=len(self.ctx.classnames),
            probe=probe,
            config=train,
            generator=self.ctx.generator,
            device=self.ctx.device,
        )
        self.set_head(model.head.weight.detach(), model.head.bias.detach())

    def predict(self, batch: FeatureBatch) -> MethodOutput:
        return head_output(self.logits, batch, logit_scale=self.ctx.backbone.logit_scale)
