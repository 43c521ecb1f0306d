"""Sweeps on a Slurm cluster through submitit: one array task per run, resubmission that skips what is done or
still queued, and a status of every run.

Why a job array and not one job per run: a sweep is hundreds of runs of the same shape (same resources, same
code, different RunKey), which is what arrays are for. The whole sweep is one `sbatch` call (clusters limit
and rate submissions), the scheduler sees one entry with `%N` concurrency (`--array-parallelism`, so a sweep
does not take the whole partition), and every task still has its own job id (`<array>_<i>`), log files, state
and exit status: a failed run is listed, and resubmitted, on its own.

Before the array, by default, one features job encodes every shared feature set the runs read (each test set
and the few-shot pool, per backbone), and the array starts only after it succeeded (`afterok`); without it,
the first tasks would all encode ImageNet at the same time into the same cache. With submitit's local
executor (tests), which knows no dependencies, the submission waits for that job instead.

Each task calls the same harness as `oodbench run`: `Harness().run(key, execution, results_dir=...)`, after
checking that the run's result file is not there already. What was submitted is kept in a small state file,
`<log dir>/sweep-state.json` (run stem -> job id, results folder, features job, time), written atomically, so
`oodbench sweep --status` and a re-submitted sweep know each run's job. A run's state comes from, in order:
its result file (done); its job's result pickle (failed, with the error, when the job raised); the
scheduler (`sacct` for Slurm: pending, running, or failed when it ended without a result: timeout, out of
memory, cancelled, node failure); never submitted. Two sweeps submitting into one log folder at the same
moment may lose one's state entries (the last write wins); submit one sweep per log folder at a time.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmark.atomic import write_json_atomic
from benchmark.config import Execution, RunKey
from benchmark.errors import OodbenchError

STATE_FILE = "sweep-state.json"
STATE_FORMAT = 1
CLUSTER_ENV = "OODBENCH_SUBMITIT_CLUSTER"  # "local": submitit's LocalExecutor instead of Slurm (tests, dry runs)
CLUSTERS = ("slurm", "local")
# sacct states (man sacct, JOB STATE CODES) and what they mean for a run whose job left no result pickle
QUEUED = {"PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD", "SUSPENDED", "CONFIGURING"}
ACTIVE = {"RUNNING", "COMPLETING", "RESIZING", "SIGNALING", "STAGE_OUT"}
DONE, RUNNING, PENDING, FAILED, NOT_SUBMITTED, UNKNOWN = (
    "done",
    "running",
    "pending",
    "failed",
    "not submitted",
    "unknown",
)
LIVE = {RUNNING, PENDING, UNKNOWN}  # a re-submitted sweep leaves these alone


@dataclass(frozen=True)
class ClusterOptions:
    """Where and with what resources a sweep's jobs run. `time_min` is per run; `mem_gb` None takes the
    partition's default; `setup` lines run before each job (module load, activating an environment);
    `extra` holds further sbatch options (`qos=high`, `constraint=a100`)."""

    log_dir: Path
    partition: str | None = None
    account: str | None = None
    gpus: int = 1
    cpus: int = 8
    mem_gb: float | None = None
    time_min: int = 240
    array_parallelism: int = 64
    setup: tuple[str, ...] = ()
    extra: Mapping[str, str] = field(default_factory=dict)
    prefetch: bool = True
    cluster: str = "slurm"

    def __post_init__(self) -> None:
        if self.cluster not in CLUSTERS:
            raise OodbenchError(f"Unknown submitit cluster {self.cluster!r} (${CLUSTER_ENV}); use slurm or local.")
        for name, value, low in (
            ("--gpus", self.gpus, 0),
            ("--cpus", self.cpus, 1),
            ("--time", self.time_min, 1),
            ("--array-parallelism", self.array_parallelism, 1),
        ):
            if value < low:
                raise OodbenchError(f"{name} must be at least {low} (got {value}).")
        if self.mem_gb is not None and self.mem_gb <= 0:
            raise OodbenchError(f"--mem-gb must be positive (got {self.mem_gb}).")
        object.__setattr__(self, "log_dir", Path(self.log_dir).expanduser().absolute())
        object.__setattr__(self, "setup", tuple(self.setup))
        object.__setattr__(self, "extra", dict(self.extra))

    @property
    def state_path(self) -> Path:
        return self.log_dir / STATE_FILE


def parse_minutes(text: str) -> int:
    """Slurm's time formats as whole minutes: `90`, `1:30:00`, `30:00` (MM:SS), `2-00:00:00`, `2-12`."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m:
        raise OodbenchError(f"--time takes minutes or Slurm's D-HH:MM:SS (got {text!r}), for example --time 4:00:00.")
    days, a, b, c = (int(x) if x else None for x in m.groups())
    if days is not None:  # D-HH, D-HH:MM, D-HH:MM:SS
        hours, minutes, seconds = a, b or 0, c or 0
        total = days * 1440 + hours * 60 + minutes + seconds / 60
    elif b is None:  # MM
        total = a
    elif c is None:  # MM:SS
        total = a + b / 60
    else:  # HH:MM:SS
        total = a * 60 + b + c / 60
    return max(1, int(-(-total // 1)))


# ---------------------------------------------------------------- what a job runs


def run_job(key: RunKey, execution: Execution, results_dir: str, method_file: str | None = None) -> str:
    """One planned run inside a job: the harness's `run`, unless the run's result file exists already (a job
    submitted twice, or a run finished by an earlier job). Returns the result file's path."""
    from benchmark.harness import Harness
    from benchmark.results import existing_runs

    if method_file:
        from methods import load_method_file

        load_method_file(Path(method_file))
    harness = Harness()
    resolved = harness.resolve(key)
    done = existing_runs(Path(results_dir) / key.method, resolved.stem())
    if done:
        return str(done[0])
    return str(harness.run(key, execution, results_dir=Path(results_dir)).path)


def features_job(keys: list[RunKey], execution: Execution, method_file: str | None = None) -> int:
    """Encode the shared feature sets of `keys` before the runs start in parallel (benchmark.sweep.prefetch)."""
    from benchmark.sweep import prefetch_features

    if method_file:
        from methods import load_method_file

        load_method_file(Path(method_file))
    return prefetch_features(keys, execution)


# ---------------------------------------------------------------- submitit


def _executor(options: ClusterOptions, *, name: str, dependency: str | None = None):
    try:
        import submitit
    except ImportError:
        raise OodbenchError(
            "--executor slurm needs submitit (`pip install submitit`, a dependency of oodbench)."
        ) from None
    options.log_dir.mkdir(parents=True, exist_ok=True)
    try:
        ex = submitit.AutoExecutor(folder=options.log_dir, cluster=options.cluster)
    except RuntimeError as err:  # no srun on this machine
        raise OodbenchError(
            f"Cannot submit to Slurm from this machine ({err}); run `oodbench sweep --executor slurm` on a "
            f"login node of the cluster."
        ) from None
    params: dict[str, Any] = dict(
        name=name,
        timeout_min=options.time_min,
        gpus_per_node=options.gpus,
        cpus_per_task=options.cpus,
        tasks_per_node=1,
        nodes=1,
        slurm_array_parallelism=options.array_parallelism,
    )
    if options.mem_gb is not None:
        params["mem_gb"] = options.mem_gb
    for key, value in (("partition", options.partition), ("account", options.account), ("dependency", dependency)):
        if value:
            params[f"slurm_{key}"] = value
    if options.setup:
        params["slurm_setup"] = list(options.setup)
    if options.extra:
        params["slurm_additional_parameters"] = dict(options.extra)
    ex.update_parameters(**params)
    return ex


def _job(options: ClusterOptions, job_id: str):
    import submitit

    cls = submitit.SlurmJob if options.cluster == "slurm" else submitit.LocalJob
    return cls(folder=options.log_dir, job_id=job_id)


# ---------------------------------------------------------------- state


def read_state(options: ClusterOptions) -> dict[str, dict[str, Any]]:
    """Run stem -> what was submitted for it (empty when nothing was)."""
    import json

    path = options.state_path
    if not path.exists():
        return {}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"format {state.get('format')!r}")
        return dict(state["runs"])
    except (ValueError, KeyError, TypeError) as err:
        raise OodbenchError(
            f"The sweep state file {path} is unreadable ({err}); move it away to start the bookkeeping "
            f"afresh (finished runs are still found by their result files)."
        ) from None


def _write_state(options: ClusterOptions, runs: dict[str, dict[str, Any]]) -> None:
    write_json_atomic(options.state_path, {"format": STATE_FORMAT, "runs": runs})


@dataclass
class RunStatus:
    stem: str
    key: RunKey
    state: str  # DONE, RUNNING, PENDING, FAILED, NOT_SUBMITTED or UNKNOWN
    job_id: str = ""
    detail: str = ""  # the error, or the scheduler's state
    logs: tuple[Path, ...] = ()  # stdout and stderr of the job
    result: Path | None = None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _pid_alive(pid: str) -> bool:
    """Whether the local executor's job process `pid` still runs (a zombie, ended but not reaped, does not)."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{int(pid)}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def job_states(options: ClusterOptions, job_ids: Sequence[str]) -> dict[str, tuple[str, str, tuple[Path, ...]]]:
    """job id -> (state, detail, log paths), from result pickles, then the scheduler (one sacct call for all)."""
    from submitit.core.utils import pickle_load

    out: dict[str, tuple[str, str, tuple[Path, ...]]] = {}
    ask: list[str] = []
    jobs = {jid: _job(options, jid) for jid in dict.fromkeys(job_ids)}
    for jid, job in jobs.items():
        logs = (job.paths.stdout, job.paths.stderr)
        if job.paths.result_pickle.exists():
            try:
                outcome, value = pickle_load(job.paths.result_pickle)
            except Exception as err:  # a result pickle being written, or damaged
                outcome, value = "error", f"unreadable result pickle ({type(err).__name__})"
            out[jid] = (DONE, "", logs) if outcome == "success" else (FAILED, _last_line(value), logs)
        else:
            ask.append(jid)
    if options.cluster == "slurm" and ask:
        import submitit

        watcher = submitit.SlurmJob.watcher
        watcher.clear()  # fresh states, not those an earlier call in this process cached
        for jid in ask:
            watcher.register_job(jid)
        watcher.update()
        for jid in ask:
            logs = (jobs[jid].paths.stdout, jobs[jid].paths.stderr)
            s = (watcher.get_state(jid, mode="cache") or "UNKNOWN").split()[0]  # "CANCELLED by 123" -> CANCELLED
            if s in QUEUED:
                out[jid] = (PENDING, s, logs)
            elif s in ACTIVE:
                out[jid] = (RUNNING, s, logs)
            elif s == "UNKNOWN":
                out[jid] = (UNKNOWN, "the scheduler does not (yet) know this job", logs)
            else:  # COMPLETED without a result pickle, FAILED, TIMEOUT, OUT_OF_MEMORY, CANCELLED, NODE_FAIL, ...
                out[jid] = (FAILED, f"the job ended {s} without a result", logs)
    for jid in ask if options.cluster == "local" else ():
        logs = (jobs[jid].paths.stdout, jobs[jid].paths.stderr)
        alive = _pid_alive(jid)
        out[jid] = (RUNNING, "", logs) if alive else (FAILED, "the job's process ended without a result", logs)
    return out


def sweep_status(runs: Sequence[Any], *, results_dir: Path, options: ClusterOptions) -> list[RunStatus]:
    """The state of every planned run (benchmark.sweep.PlannedRun) of a sweep."""
    from benchmark.results import existing_runs

    results_dir = Path(results_dir).absolute()
    state = read_state(options)
    statuses: list[RunStatus] = []
    pending_lookup: list[tuple[RunStatus, dict[str, Any]]] = []
    for run in runs:
        done = existing_runs(results_dir / run.method, run.stem)
        entry = state.get(run.stem)
        if entry is not None and Path(entry.get("results_dir", "")) != results_dir:
            entry = None  # submitted for another results folder: not this sweep's
        if done:
            statuses.append(RunStatus(run.stem, run.key, DONE, (entry or {}).get("job_id", ""), result=done[0]))
        elif entry is None:
            statuses.append(RunStatus(run.stem, run.key, NOT_SUBMITTED))
        else:
            status = RunStatus(run.stem, run.key, UNKNOWN, entry["job_id"])
            statuses.append(status)
            pending_lookup.append((status, entry))
    ids = [e["job_id"] for _, e in pending_lookup] + [e["after"] for _, e in pending_lookup if e.get("after")]
    states = job_states(options, ids) if ids else {}
    for status, entry in pending_lookup:
        s, detail, logs = states[entry["job_id"]]
        if s == DONE:  # the job finished but its result file is gone (moved, or another results folder)
            s, detail = FAILED, f"the job finished, but no result file for this run is in {results_dir}"
        dep = entry.get("after")
        if s == PENDING and dep and states.get(dep, ("",))[0] == FAILED:
            dep_state = states[dep]
            s, detail, logs = FAILED, f"its features job {dep} failed: {dep_state[1]}", dep_state[2]
        status.state, status.detail, status.logs = s, detail, logs
    return statuses


# ---------------------------------------------------------------- submission


@dataclass
class Submission:
    statuses: list[RunStatus]  # before submitting
    submitted: dict[str, str] = field(default_factory=dict)  # run stem -> job id
    features_job: str = ""
    features_waited: bool = False  # the local executor: the features job finished before the array was submitted
    array_id: str = ""

    def count(self, state: str) -> int:
        return sum(s.state == state for s in self.statuses)


def submit_sweep(
    runs: Sequence[Any],
    *,
    execution: Execution,
    results_dir: Path,
    options: ClusterOptions,
    method_file: Path | None = None,
) -> Submission:
    """Submit every planned run that is neither done nor still queued or running: one features job (unless
    `options.prefetch` is off), then one job array. Failed runs are submitted again (a queued task whose
    features job failed is cancelled first)."""
    results_dir = Path(results_dir).absolute()
    statuses = sweep_status(runs, results_dir=results_dir, options=options)
    report = Submission(statuses=statuses)
    todo = [(run, s) for run, s in zip(runs, statuses, strict=True) if s.state in (FAILED, NOT_SUBMITTED)]
    if not todo:
        return report
    for _, s in todo:
        if s.state == FAILED and s.job_id and options.cluster == "slurm" and "features job" in s.detail:
            _job(options, s.job_id).cancel(check=False)  # still queued behind a dependency that never holds
    method = str(Path(method_file).absolute()) if method_file else None
    keys = [run.key for run, _ in todo]
    dependency = None
    if options.prefetch:
        job = _executor(options, name="oodbench-features").submit(features_job, keys, execution, method)
        report.features_job = str(job.job_id)
        if options.cluster == "slurm":
            dependency = f"afterok:{job.job_id}"
        else:  # the local executor has no dependencies: wait here
            report.features_waited = True
            try:
                job.result()
            except Exception as err:
                raise OodbenchError(
                    f"The features job {job.job_id} failed ({_last_line(str(err)) or type(err).__name__}); "
                    f"see {job.paths.stderr}. Nothing else was submitted."
                ) from None
    ex = _executor(options, name="oodbench-run", dependency=dependency)
    with ex.batch():
        jobs = [ex.submit(run_job, run.key, execution, str(results_dir), method) for run, _ in todo]
    state = read_state(options)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for (run, _), job in zip(todo, jobs, strict=True):
        report.submitted[run.stem] = str(job.job_id)
        state[run.stem] = {
            "job_id": str(job.job_id),
            "after": report.features_job if dependency else "",
            "results_dir": str(results_dir),
            "method": run.method,
            "shots": run.shots,
            "seed": run.seed,
            "cluster": options.cluster,
            "submitted_at": now,
        }
    report.array_id = str(jobs[0].job_id).split("_")[0] if jobs else ""
    _write_state(options, state)
    return report


def wait_for(options: ClusterOptions, job_ids: Sequence[str], *, timeout_s: float = 600.0) -> None:
    """Block until every job has left the queue (tests with the local executor; Slurm users use --status)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(s[0] not in LIVE for s in job_states(options, job_ids).values()):
            return
        time.sleep(0.5)
    raise TimeoutError(f"jobs {list(job_ids)} still running after {timeout_s:.0f}s")
