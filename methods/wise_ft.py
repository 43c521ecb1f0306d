"""WiSE-FT (Wortsman et al., CVPR 2022; mlfoundations/wise-ft): fine-tune as `full_ft`, then interpolate every
weight of image encoder and head between the zero-shot model and the fine-tuned one,
theta = (1 - alpha) * theta_zero_shot + alpha * theta_fine_tuned.

One run is one alpha (`--config alpha=0.3`); a sweep takes several (`oodbench sweep --config alpha=0
--config alpha=0.5 ...`). The fine-tuning stage does not depend on alpha, so it runs once per split, seed and
settings (the harness's stage cache) and every further alpha costs an interpolation and a re-encoding. At
alpha 0 the model is zero-shot CLIP exactly (same features, same logits); at alpha 1 it is `full_ft`.
"""

from __future__ import annotations

from dataclasses import dataclass

from methods.base import METHODS, FitData, param
from methods.full_ft import FullFinetune
from methods.shared.finetune import wise_ft_interpolate
from methods.shared.tuning import HEAD, FinetuneConfig, encoder_tensors


@dataclass(frozen=True)
class WiseFtConfig(FinetuneConfig):
    alpha: float = param(0.5, low=0.0, high=1.0, doc="weight of the fine-tuned model (wise-ft src/args.py)")


@METHODS.register("wise_ft")
class WiseFt(FullFinetune):
    """full_ft's fine-tuning (the same cached stage), then the weights interpolated with zero-shot CLIP's."""

    Config = WiseFtConfig
    name = "wise_ft"

    def fit(self, data: FitData) -> None:
        self.prepare_head()
        zero_shot = {k: v.detach().to("cpu", copy=True) for k, v in encoder_tensors(self.model, ("visual.",)).items()}
        zero_shot.update({HEAD + k: v.detach().to("cpu", copy=True) for k, v in self.zero_shot.state_dict().items()})
        finetuned = {k: v.to("cpu") for k, v in self.finetuned(data, self.config).items()}
        self.apply_tensors(wise_ft_interpolate(zero_shot, finetuned, alpha=self.config.alpha))
