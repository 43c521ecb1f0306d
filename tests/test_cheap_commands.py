"""Commands that only describe things never import torch or open_clip: each runs in a fresh process, which then
reports the heavy modules it loaded."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "open_clip", "torchvision")
PROBE = (
    "import atexit, sys\n"
    "heavy = lambda: ' '.join(m for m in {heavy!r} if m in sys.modules)\n"
    "atexit.register(lambda: sys.stderr.write('\\nHEAVY ' + heavy() + '\\n'))\n"
    "sys.argv = ['oodbench', *sys.argv[1:]]\n"
    "from benchmark.cli import main\n"
    "main()\n"
)


@pytest.fixture(scope="module")
def entry(demo_run, tmp_path_factory) -> Path:
    """A results folder holding the session's demo entry (with its per-sample scores) under zero_shot/."""
    results = tmp_path_factory.mktemp("cheap") / "results"
    (results / "zero_shot").mkdir(parents=True)
    for f in demo_run["file"].parent.glob(demo_run["file"].stem + "*"):
        shutil.copy(f, results / "zero_shot" / f.name)
    return results / "zero_shot" / demo_run["file"].name


def run_probed(*args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    line = [x for x in out.stderr.splitlines() if x.startswith("HEAVY")]
    assert line, out.stderr
    return out, line[-1].split()[1:]


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["run", "--help"],
        ["sweep", "--help"],
        ["list", "suites"],
        ["list", "datasets"],
        ["list", "scores"],
        ["list", "methods"],
        ["list", "backbones"],
        ["show", "{entry}"],
        ["validate", "{entry}"],
        ["leaderboard", "build", "--results", "{results}", "--out", "{site}"],
    ],
    ids=lambda a: " ".join(x for x in a if not x.startswith("{")),
)
def test_describing_commands_never_import_torch_or_open_clip(args, entry, tmp_path):
    args = [a.format(entry=entry, results=entry.parents[1], site=tmp_path / "site") for a in args]
    out, heavy = run_probed(*args)
    assert out.returncode == 0, out.stdout + out.stderr
    assert heavy == [], f"`oodbench {' '.join(args)}` imported {heavy}"


def test_list_shows_every_registered_method_score_and_backbone():
    import open_clip

    from benchmark.backbone_names import open_clip_pretrained
    from methods import METHODS, SCORES, load_methods

    assert open_clip_pretrained() == tuple(open_clip.list_pretrained())  # read from source, same table
    load_methods()
    for what, names in (
        ("methods", METHODS.names()),
        ("scores", SCORES.names()),
        ("backbones", ["oodbench-tiny-fmnist:demo", "ViT-B-16:openai", "ViT-L-14:laion2b_s32b_b82k"]),
    ):
        out, _ = run_probed("list", what)
        listed = {line.split("│")[1].strip() for line in out.stdout.splitlines() if line.count("│") > 2}
        assert set(names) <= listed, (what, set(names) - listed)
