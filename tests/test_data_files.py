"""Shipped class-name lists and prompt templates against fixed hashes, so that a drift fails.

These files decide what every zero-shot classifier and every score sees; docs/fidelity.md says
where each came from. Changing one is a change of the suites that use it: update the hash here,
the fidelity table and the suite's version together.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from benchmark.backbones import BUNDLED_WEIGHTS, DEMO_BACKBONE
from benchmark.datasets import CLASSNAMES_DIR
from benchmark.hashing import sha256_file
from benchmark.suites import TEMPLATES_FILE

CLASS_FILES = {
    "fmnist-id6.txt": "c1c347cd78d3b6dbdbaeeeb02320e4f536f59f80502b4d5d568e0a6b079bd57b",
    "food101.txt": "66d80317ae31bf14e31456ba7fef887a3d0b3990966cbd5211dbccbf7c118e98",
    "imagenet10.txt": "e1db93cdc13169e62839819864096e90c948fb7430934adca31df4b15298c584",
    "imagenet10.wnids": "38ded461fe974c17541a2d16837da6bbd645c2555daa3730d7f993ecf543e241",
    "imagenet100.txt": "3417cbe08710a62540b7541e75b066f8204bf9f912f052a0cf76f552749e4261",
    "imagenet100.wnids": "94fc3b205ac5c7e2bf27a74c492c38ae99925546f6e67fa5007a1799b0425304",
    "imagenet1k.txt": "8800e39242cbed4c6889376e20a49cfdaf4f84a773a6686d15c3b39972ef94c4",
    "imagenet1k.wnids": "70002b0ff5de60a3a17a82dbfcff291931f96225ddf941ad2e182fc39e183d15",
    "imagenet20.txt": "c8d7d463f9ab94dce74ddc7853df7f8825b189a3d608dbe7b81fc92e62fd65a0",
    "imagenet20.wnids": "f85b2660edf7a3e3cefa6487e7c60fdccffad801502b96eed5fae8ccaf40b3d3",
    "oxford-pets37.txt": "f8235b071a2ff6e4d9f5e7bee37dc9c898bbbda34c1908ac9bade1d33a2e7ab0",
}

# sha256 of a template set's templates joined by newlines
TEMPLATE_SETS = {
    "simple": "e8e367e769f86c27d7507382b76c671667da9fa8ae030159a57681a812b0fa33",
    "mcm": "a49db5fdb0eb48888b22addd1e83eb8336e2f5dd2a5f47e7fba06eccef851a98",
    "tip_adapter_imagenet": "6ef3883987d224b7949da69fe0b615af152e1560eaac4c5c38555e50c882d415",
    "demo": "5f3f8619a6437988dc2b9c0d147088a514fd1b8b7592d23f31630498987c2d93",
    "imagenet80": "4f976686fb651bb5803d4689dcd849f75efe0ef19a3c801355bc9a6f03c8a5af",
    "cub": "f3126b8375a9e07a0342174c2228c3cff478a5ad779df6d2885a4dfdeaa39881",
    "food101": "77a79bac7d9cf25b704d8c51158c1f16659cafee6035c8d63e27172ffaec2340",
    "oxford-pets": "16a0790f0e45e97e33950cca7bb403ace4980897f60a295992f2e7aeb85507a1",
    "stanford-cars": "e8e367e769f86c27d7507382b76c671667da9fa8ae030159a57681a812b0fa33",
}


def _templates() -> dict[str, list[str]]:
    return json.loads(TEMPLATES_FILE.read_text(encoding="utf-8"))


def test_every_shipped_class_file_is_pinned():
    shipped = sorted(p.name for p in CLASSNAMES_DIR.iterdir() if p.is_file())
    assert shipped == sorted(CLASS_FILES), "add the new class file's hash here (and its source to docs/fidelity.md)"


@pytest.mark.parametrize("name", sorted(CLASS_FILES))
def test_class_file_hash(name):
    digest = hashlib.sha256((CLASSNAMES_DIR / name).read_bytes()).hexdigest()
    assert digest == CLASS_FILES[name], f"{name} changed; see the module docstring"


def test_every_template_set_is_pinned():
    assert sorted(_templates()) == sorted(TEMPLATE_SETS)


@pytest.mark.parametrize("key", sorted(TEMPLATE_SETS))
def test_template_set_hash(key):
    templates = _templates()[key]
    assert all(t.count("{}") == 1 for t in templates), f"{key}: every template holds one {{}} for the class name"
    digest = hashlib.sha256("\n".join(templates).encode()).hexdigest()
    assert digest == TEMPLATE_SETS[key], f"template set {key!r} changed; see the module docstring"


def test_readable_anchors_of_the_pinned_content():
    """The same facts as the hashes, in words, so that a failure above is easy to place."""
    t = _templates()
    assert t["mcm"] == ["a photo of a {}"]  # MCM's prompt: no full stop
    assert t["simple"] == ["a photo of a {}."]
    assert len(t["tip_adapter_imagenet"]) == 7 and t["tip_adapter_imagenet"][0] == "itap of a {}."
    in10 = (CLASSNAMES_DIR / "imagenet10.txt").read_text(encoding="utf-8").splitlines()
    in20 = (CLASSNAMES_DIR / "imagenet20.txt").read_text(encoding="utf-8").splitlines()
    assert in10[0] == "warplane" and "antelope" in in10 and "horse" in in10
    assert in20[0] == "sailboat" and "timber wolf" in in20
    in100 = (CLASSNAMES_DIR / "imagenet100.txt").read_text(encoding="utf-8").splitlines()
    assert len(in100) == len(set(in100)) == 100 and "chain saw" in in100  # class-index names, `_` read as a space


def test_bundled_demo_weights_match_their_training_record():
    """scripts/train_demo_backbone.py writes training.json beside the weights; the two travel together."""
    weights = BUNDLED_WEIGHTS[DEMO_BACKBONE]
    record = json.loads((weights.parent / "training.json").read_text(encoding="utf-8"))
    config = json.loads((weights.parent / f"{record['arch']}.json").read_text(encoding="utf-8"))
    assert record["weights"] == weights.name and sha256_file(weights) == record["sha256"]
    assert record["text_context_length"] == config["text_cfg"]["context_length"] == 77  # CLIP's, fits 16 context tokens
