"""Zero-shot CLIP (Radford et al., 2021): cosine similarity to prompt-ensembled class embeddings.

The baseline every table compares against; with the MCM score it is MCM (Ming et al., 2022).
"""

from __future__ import annotations

from dataclasses import dataclass

from methods.base import METHODS, ZERO_SHOT, FeatureBatch, Method, MethodConfig, MethodOutput, l2_normalize
from methods.shared.training import head_output


@dataclass(frozen=True)
class ZeroShotConfig(MethodConfig):
    pass


@METHODS.register("zero_shot")
class ZeroShot(Method):
    Config = ZeroShotConfig
    protocol = ZERO_SHOT
    paper = "Radford et al. Learning Transferable Visual Models From Natural Language Supervision. ICML 2021."

    def predict(self, batch: FeatureBatch) -> MethodOutput:
        scale = self.ctx.backbone.logit_scale
        return head_output(lambda f: scale * l2_normalize(f) @ self.ctx.text_features.T, batch, logit_scale=scale)
