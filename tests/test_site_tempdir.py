"""A build leaves no temporary folder (issue 14 item 7): not on errors, not on SIGTERM, and after SIGKILL the next
build removes what the dead one left, never the folder of a build that is still running."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.results import scores_path
from leaderboard.build import build_site
from leaderboard.sitedir import remove_stale, temporary_site

REPO = Path(__file__).parents[1]
# a build whose static files take a minute to copy: long enough to be killed while its temporary folder exists
SLOW_BUILD = """
import shutil, sys, time
from pathlib import Path
copy = shutil.copytree
def slow(src, dst, *a, **k):
    out = copy(src, dst, *a, **k)
    print("copied", flush=True)
    time.sleep(60)
    return out
shutil.copytree = slow
from leaderboard.build import build_site
build_site(results_dir=Path(sys.argv[1]), out=Path(sys.argv[2]))
"""


@pytest.fixture
def results(tmp_path, demo_run) -> Path:
    root = tmp_path / "results"
    root.mkdir()
    shutil.copy(demo_run["file"], root / "demo.parquet")
    shutil.copy(scores_path(demo_run["file"]), scores_path(root / "demo.parquet"))
    return root


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".site."))


def _killed_build(results: Path, out: Path, sig: int) -> int:
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_BUILD, str(results), str(out)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "copied"
        assert _leftovers(out.parent), "the build should be writing into its temporary folder now"
        proc.send_signal(sig)
        return proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sigkill_leaves_a_folder_that_the_next_build_removes(results, tmp_path):
    out = tmp_path / "site"
    assert _killed_build(results, out, signal.SIGKILL) == -signal.SIGKILL
    assert len(_leftovers(tmp_path)) == 1  # a killed process cannot clean up after itself
    build_site(results_dir=results, out=out)
    assert _leftovers(tmp_path) == [] and (out / "index.html").exists()


def test_sigterm_during_a_build_leaves_nothing(results, tmp_path):
    out = tmp_path / "site"
    assert _killed_build(results, out, signal.SIGTERM) == 128 + signal.SIGTERM
    assert _leftovers(tmp_path) == [] and not out.exists()


def test_a_failed_build_leaves_nothing(results, tmp_path, monkeypatch):
    import leaderboard.build as build

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(build, "_write_downloads", broken)
    with pytest.raises(Exception, match="No space left on device"):
        build_site(results_dir=results, out=tmp_path / "site")
    assert _leftovers(tmp_path) == []


def test_the_folder_of_a_running_build_is_never_removed(tmp_path):
    out = tmp_path / "site"
    with temporary_site(out) as live:
        (live / "page.html").write_text("half a site")
        dead = out.with_name(".site.tmp-999999-deadbeef")  # what a SIGKILLed build leaves: nobody holds its lock
        dead.mkdir()
        (dead / "page.html").write_text("stale")
        assert remove_stale(out) == [dead]
        assert live.exists() and (live / "page.html").read_text() == "half a site"
        child = subprocess.run(  # another process (another build) sees the live folder as taken
            [
                sys.executable,
                "-c",
                "import sys, pathlib; from leaderboard.sitedir import remove_stale; "
                "print(remove_stale(pathlib.Path(sys.argv[1])))",
                str(out),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        assert child.stdout.strip() == "[]" and live.exists()
    assert not live.exists() and not dead.exists()


def test_the_pid_in_a_stale_name_does_not_matter(tmp_path):
    out = tmp_path / "site"
    stale = out.with_name(f".site.tmp-{os.getpid()}-0000")  # our own pid, but no lock held: stale all the same
    stale.mkdir(parents=True)
    assert remove_stale(out) == [stale]
