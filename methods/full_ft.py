"""Full fine-tuning (as in WiSE-FT, Wortsman et al., CVPR 2022; mlfoundations/wise-ft): the image encoder and
a linear head initialised from the zero-shot text classifier, trained end to end with cross-entropy.

The head is `logit_scale * text_features` with zero bias on L2-normalised image features, so at step 0 the
model is zero-shot CLIP; the text tower is not trained. Defaults: WiSE-FT's ImageNet command, with no
warm-up (few-shot runs are shorter than its 500 steps); docs/fidelity-tuning.md traces each one. The
fine-tuning stage is shared with `wise_ft` (the same settings, split and seed give the same tensors, cached
once): `full_ft` is `wise_ft` with alpha 1.
"""

from __future__ import annotations

from methods.base import METHODS, FeatureBatch, FitData, MethodOutput
from methods.shared.training import head_output
from methods.shared.tuning import FINETUNE_FAMILIES, WISE_FT_PAPER, FinetuneConfig, HeadTuner


@METHODS.register("full_ft")
class FullFinetune(HeadTuner):
    Config = FinetuneConfig
    name = "full_ft"
    paper = WISE_FT_PAPER
    family_defaults = FINETUNE_FAMILIES

    def prepare_head(self) -> None:
        self.init_zero_shot(self.config.templates)

    def fit(self, data: FitData) -> None:
        self.prepare_head()
        self.apply_tensors(self.finetuned(data, self.config))

    def predict(self, batch: FeatureBatch) -> MethodOutput:
        return head_output(self.logits, batch, logit_scale=self.ctx.backbone.logit_scale)
