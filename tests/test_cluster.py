"""`oodbench sweep --executor slurm`: through submitit's local executor (real jobs in other processes: a run that
fails, one still running, re-submission, status), and against stand-ins for sbatch/sacct/scancel that record
what Slurm would have been asked."""

from __future__ import annotations

import os
import pickle
import stat
import textwrap
import time

import pytest
from typer.testing import CliRunner

from benchmark.backbones import DEMO_BACKBONE
from benchmark.cli import app
from benchmark.cluster import (
    CLUSTER_ENV,
    DONE,
    FAILED,
    NOT_SUBMITTED,
    PENDING,
    RUNNING,
    ClusterOptions,
    parse_minutes,
    read_state,
    submit_sweep,
    sweep_status,
)
from benchmark.config import Execution
from benchmark.errors import OodbenchError
from benchmark.results import read_results, result_files
from benchmark.sweep import plan
from methods import METHODS

SUITE = "fmnist-ood"

# a test-time method (one run per seed): seed 2 fails until FIXED exists, seed 3 waits until RELEASE exists
FLAKY = """
    import time
    from dataclasses import dataclass
    from pathlib import Path

    from methods.base import METHODS, TEST_TIME, Method, MethodConfig, MethodOutput, l2_normalize

    MARKERS = Path({markers!r})


    @dataclass(frozen=True)
    class FlakyConfig(MethodConfig):
        pass


    @METHODS.register("flaky")
    class Flaky(Method):
        Config = FlakyConfig
        protocol = TEST_TIME
        provides = frozenset()  # logits only
        paper = "A test double that fails on seed 2 and waits on seed 3."

        def predict(self, batch):
            seed = self.ctx.generator.initial_seed()
            if seed == 2 and not (MARKERS / "FIXED").exists():
                raise RuntimeError("flaky failure on seed 2")
            deadline = time.monotonic() + 120
            while seed == 3 and not (MARKERS / "RELEASE").exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            scale = self.ctx.backbone.logit_scale
            logits = scale * l2_normalize(batch.global_) @ self.ctx.text_features.T
            return MethodOutput(logits=logits, logit_scale=scale)
"""


@pytest.fixture
def flaky(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    path = tmp_path / "flaky_method.py"
    path.write_text(textwrap.dedent(FLAKY.format(markers=str(markers))))
    yield path, markers
    METHODS.remove("flaky")


def _invoke(args):
    """The CLI in this process; each call loads the method file again, as a new process would."""
    METHODS.remove("flaky")
    return CliRunner().invoke(app, args)


def _statuses(options, results, method_file):
    from methods import load_method_file

    if "flaky" not in METHODS:
        load_method_file(method_file)
    runs = plan(suite=SUITE, backbone=DEMO_BACKBONE, methods=["zero_shot", "flaky"], shots=[1], seeds=[2, 3])
    return {(s.key.method, s.key.seed): s for s in sweep_status(runs, results_dir=results, options=options)}


def _wait(options, results, method_file, want: dict, timeout: float = 240.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = {k: s.state for k, s in _statuses(options, results, method_file).items()}
        if all(got[k] == v for k, v in want.items()):
            return got
        time.sleep(0.5)
    raise AssertionError(f"runs did not reach {want}: {got}")


@pytest.mark.slow
def test_local_executor_failure_status_and_resubmission(tmp_path, flaky, demo_run, monkeypatch):
    method_file, markers = flaky
    results, logs = tmp_path / "results", tmp_path / "jobs"
    monkeypatch.setenv(CLUSTER_ENV, "local")
    args = [
        "sweep",
        "--suite",
        SUITE,
        "--backbone",
        DEMO_BACKBONE,
        "--methods",
        "zero_shot,flaky",
        "--shots",
        "1",
        "--seeds",
        "2,3",
        "--method-file",
        str(method_file),
        "--results-dir",
        str(results),
        "--cache-dir",
        str(demo_run["cache_dir"]),
        "--device",
        "cpu",
        "--executor",
        "slurm",
        "--log-dir",
        str(logs),
        "--time",
        "10",
        "--no-progress",
    ]
    first = _invoke(args)
    assert first.exit_code == 0, first.output
    assert "submitted 3 runs (3 new, 0 failed before)" in first.output
    assert "(which has finished)" in first.output  # no dependencies in the local executor: the submission waited
    options = ClusterOptions(log_dir=logs, cluster="local")
    state = read_state(options)
    assert len(state) == 3 and len({e["job_id"] for e in state.values()}) == 3

    _wait(options, results, method_file, {("zero_shot", 2): DONE, ("flaky", 2): FAILED, ("flaky", 3): RUNNING})
    status = _invoke([*args, "--status"])
    assert status.exit_code == 0, status.output
    assert "1 done, 1 running, 1 failed" in status.output
    assert "flaky failure on seed 2" in status.output
    failed = _statuses(options, results, method_file)[("flaky", 2)]
    assert failed.logs[1].exists() and "flaky failure on seed 2" in failed.logs[1].read_text()
    assert f"failed: flaky shots=0 seed=2 (job {failed.job_id}): " in status.output
    assert f"log: {failed.logs[1]}" in status.output

    # resubmitting: the failed run goes again, the finished ones and the one still running are left alone
    (markers / "FIXED").touch()
    second = _invoke(args)
    assert second.exit_code == 0, second.output
    assert "resubmitting flaky shots=0 seed=2" in second.output
    assert "submitted 1 runs (0 new, 1 failed before)" in second.output
    assert "1 already done, 1 queued or running" in second.output
    assert read_state(options)[failed.stem]["job_id"] != failed.job_id

    (markers / "RELEASE").touch()
    _wait(options, results, method_file, {k: DONE for k in [("zero_shot", 2), ("flaky", 2), ("flaky", 3)]})
    third = _invoke(args)
    assert third.exit_code == 0, third.output
    assert "nothing to submit: 3 already done, 0 queued or running" in third.output
    files = result_files(results)
    assert len(files) == 3  # one file per run, none written twice
    keys = {(r["method"].iloc[0], int(r["seed"].iloc[0])) for r in map(read_results, files)}
    assert keys == {("zero_shot", 2), ("flaky", 2), ("flaky", 3)}


# ---------------------------------------------------------------- Slurm stand-ins

FAKE = {
    "srun": "#!/bin/sh\nexit 0\n",
    "sbatch": textwrap.dedent(
        """\
        #!/bin/sh
        n=$(cat "$FAKE_SLURM/next" 2>/dev/null || echo 1000)
        echo $((n + 1)) > "$FAKE_SLURM/next"
        cp "$1" "$FAKE_SLURM/sbatch_$n.sh"
        echo "Submitted batch job $n"
        """
    ),
    "sacct": '#!/bin/sh\necho "JobID|State|NodeList"\ncat "$FAKE_SLURM/sacct.txt" 2>/dev/null\n',
    "scancel": '#!/bin/sh\necho "$@" >> "$FAKE_SLURM/scancel.txt"\n',
}


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    folder = tmp_path / "fake-slurm"
    folder.mkdir()
    for name, text in FAKE.items():
        (folder / name).write_text(text)
        (folder / name).chmod((folder / name).stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(folder))
    return folder


def test_slurm_submission_asks_for_the_resources_and_an_array_after_the_features_job(tmp_path, fake_slurm):
    runs = plan(suite=SUITE, backbone=DEMO_BACKBONE, methods=["zero_shot", "coop"], shots=[1, 2], seeds=[1, 2])
    options = ClusterOptions(
        log_dir=tmp_path / "jobs",
        partition="gpu",
        account="lab",
        gpus=2,
        cpus=12,
        mem_gb=64,
        time_min=parse_minutes("1-02:00:00"),
        array_parallelism=3,
        setup=("source /opt/venv/bin/activate",),
        extra={"qos": "high"},
    )
    report = submit_sweep(runs, execution=Execution(), results_dir=tmp_path / "results", options=options)
    assert report.features_job == "1000" and report.array_id == "1001"
    assert sorted(report.submitted.values()) == [f"1001_{i}" for i in range(5)]
    features, array = (fake_slurm / "sbatch_1000.sh").read_text(), (fake_slurm / "sbatch_1001.sh").read_text()
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --account=lab",
        "#SBATCH --gpus-per-node=2",
        "#SBATCH --cpus-per-task=12",
        "#SBATCH --mem=64GB",
        "#SBATCH --time=1560",
        "#SBATCH --qos=high",
        "source /opt/venv/bin/activate",
        f"#SBATCH --output={options.log_dir}",
    ):
        assert line in features and line in array, line
    assert "#SBATCH --array=0-4%3" in array and "#SBATCH --dependency=afterok:1000" in array
    assert "--array" not in features and "--dependency" not in features
    assert "#SBATCH --job-name=oodbench-run" in array and "#SBATCH --job-name=oodbench-features" in features

    # the scheduler's view: the features job succeeded (its result pickle is there), one task running, one
    # failed, one timed out, two queued
    with (options.log_dir / "1000_0_result.pkl").open("wb") as f:
        pickle.dump(("success", 1), f)
    (fake_slurm / "sacct.txt").write_text(
        "1000|COMPLETED|n1\n1001_0|RUNNING|n1\n1001_1|FAILED|n2\n1001_2|TIMEOUT|n2\n1001_[3-4%3]|PENDING|\n"
    )
    statuses = sweep_status(runs, results_dir=tmp_path / "results", options=options)
    by_job = {s.job_id: s for s in statuses}
    assert by_job["1001_0"].state == RUNNING and by_job["1001_3"].state == PENDING == by_job["1001_4"].state
    assert by_job["1001_1"].state == FAILED and "FAILED" in by_job["1001_1"].detail
    assert by_job["1001_2"].state == FAILED and "TIMEOUT" in by_job["1001_2"].detail
    assert by_job["1001_1"].logs[1] == options.log_dir / "1001_1_0_log.err"

    again = submit_sweep(runs, execution=Execution(), results_dir=tmp_path / "results", options=options)
    assert sorted(again.submitted) == sorted([by_job["1001_1"].stem, by_job["1001_2"].stem])
    assert "#SBATCH --array=0-1%2" in (fake_slurm / "sbatch_1003.sh").read_text()  # after features job 1002
    assert not (fake_slurm / "scancel.txt").exists()


def test_a_task_queued_behind_a_failed_features_job_is_cancelled_and_resubmitted(tmp_path, fake_slurm):
    runs = plan(suite=SUITE, backbone=DEMO_BACKBONE, methods=["zero_shot"], shots=[1], seeds=[1])
    options = ClusterOptions(log_dir=tmp_path / "jobs")
    first = submit_sweep(runs, execution=Execution(), results_dir=tmp_path / "r", options=options)
    job = first.submitted[runs[0].stem]
    (fake_slurm / "sacct.txt").write_text(f"1000|OUT_OF_MEMORY|n1\n{job}|PENDING|\n")
    (status,) = sweep_status(runs, results_dir=tmp_path / "r", options=options)
    assert status.state == FAILED and "features job 1000 failed" in status.detail and "OUT_OF_MEMORY" in status.detail
    second = submit_sweep(runs, execution=Execution(), results_dir=tmp_path / "r", options=options)
    assert (fake_slurm / "scancel.txt").read_text().split() == [job]
    assert second.submitted[runs[0].stem] != job


def test_status_of_a_sweep_never_submitted_and_bad_options(tmp_path, fake_slurm):
    runs = plan(suite=SUITE, backbone=DEMO_BACKBONE, methods=["zero_shot"], shots=[1], seeds=[1])
    options = ClusterOptions(log_dir=tmp_path / "jobs")
    assert [s.state for s in sweep_status(runs, results_dir=tmp_path, options=options)] == [NOT_SUBMITTED]
    options.log_dir.mkdir()
    options.state_path.write_text("{not json")
    with pytest.raises(OodbenchError, match="unreadable"):
        sweep_status(runs, results_dir=tmp_path, options=options)
    with pytest.raises(OodbenchError, match="--gpus"):
        ClusterOptions(log_dir=tmp_path, gpus=-1)
    assert [parse_minutes(t) for t in ("90", "1:30:00", "30:30", "2-00:00:00", "1-12")] == [90, 90, 31, 2880, 2160]
    with pytest.raises(OodbenchError, match="D-HH:MM:SS"):
        parse_minutes("four hours")
    out = CliRunner().invoke(
        app,
        ["sweep", "--suite", SUITE, "--backbone", DEMO_BACKBONE, "--methods", "zero_shot", "--executor", "pbs"],
    )
    assert out.exit_code != 0 and "--executor takes local or slurm" in str(out.exception)
