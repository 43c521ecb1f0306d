"""CSP (Chen et al., NeurIPS 2024): NegLabel with a conjugated semantic pool of negative labels.

Each WordNet adjective is joined with one superclass word drawn at random ("red scene", "wooden
object"), and nouns and phrases are encoded as averages over several prompts, which spreads the
negative labels over more of the embedding space. Mining, score and output follow NegLabel (the
`neglabel` score applies); the defaults follow the authors' code (MengyuanChen21/NeurIPS2024-CSP;
docs/fidelity-negatives.md gives file and line).
"""

from __future__ import annotations

from dataclasses import dataclass

from methods.base import METHODS, MethodConfig, param
from methods.neglabel import LEXICOGRAPHER_NAMES, NegLabel, mine_pool
from methods.shared.negative_labels import NegativeLabels
from methods.shared.negatives import conjugated_phrases, prompts
from methods.shared.wordnet import CSP_EXCLUDED


@dataclass(frozen=True)
class CSPConfig(MethodConfig):
    # Defaults: MengyuanChen21/NeurIPS2024-CSP custom_config/clip-ViT-B16.py and multi_modal.py.
    # the files NegLabel's lists lack, plus txt_exclude (noun.person, noun.quantity, noun.group, adj.pert)
    excluded_files: tuple[str, ...] = param(tuple(sorted(CSP_EXCLUDED)), choices=LEXICOGRAPHER_NAMES)
    prompt_set: str = param("csp", choices=("csp",))  # methods/shared/negative_prompts.json
    drop_id_classnames: bool = False  # pos_topk=None keeps ID class names among the nouns
    superclass_seed: int = param(0, low=0, high=2**32 - 1)  # random.seed before the superclass draws
    percentile: float = param(0.95, low=0.0, high=1.0)
    quantile_rule: str = param("linear", choices=("linear", "index"))
    ratio: float = param(0.15, low=1e-6, high=1.0)
    exclude_above: float = param(0.95, low=-1.0, high=1.0)  # a candidate this close to an ID label is never picked
    logit_scale: float = param(100.0, low=0.0, high=1000.0)  # fixed 100 in the reference; 0 = the backbone's own
    max_candidates: int = param(0, low=0, high=10_000_000)  # oodbench: first N words per part of speech, 0 = all
    negatives_sha256: str = ""  # oodbench: pin the mined label list (its sha256); empty accepts any


@METHODS.register("csp")
class CSP(NegLabel):
    Config = CSPConfig
    paper = (
        "Chen, Li, Wang, Zhang, Chen, Xu, Zhang. Conjugated Semantic Pool Improves OOD Detection with "
        "Pre-trained Vision-Language Models (CSP). NeurIPS 2024."
    )

    def mine(self) -> NegativeLabels:
        c = self.config
        vocab, nouns, adjectives = self.candidate_words()
        p = prompts(c.prompt_set)
        phrases = conjugated_phrases(adjectives=adjectives, superclasses=p["superclass"], seed=c.superclass_seed)
        return mine_pool(
            self,
            name="csp",
            vocabulary_sha256=vocab.sha256,
            nouns=nouns,
            adjectives=phrases,
            noun_templates=p["noun"],
            adjective_templates=p["adjective"],
            settings={
                "id_templates": p["id"],
                "superclass_templates": p["superclass"],
                "superclass_seed": c.superclass_seed,
                "drop_id_classnames": c.drop_id_classnames,
            },
            exclude_above=c.exclude_above,
        )
