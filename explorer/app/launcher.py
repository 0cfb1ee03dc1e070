"""Background searches: start ``tinyfront search`` detached, find it again, watch it, stop it.

A search started from the browser is a separate process group (``start_new_session=True``), so it
outlives page reloads, closed browsers and even a restarted app. It is wrapped in ``sh`` which
writes the exit status to ``<workdir>/.tinyfront/runs/<study>.rc`` when the search ends; the run
record (pid, command, start time, trials already done) is ``runs/<study>.json`` and the output
goes to ``<workdir>/.tinyfront/logs/<study>.log``. :func:`stop` sends SIGTERM to the whole group
(the search and its worker processes); every finished trial is already in the storage, and the
interrupted ones are failed by heartbeat and re-run when the search is resumed.

Nothing read back is trusted (a study name comes from the storage, a run record from disk): study
names go through :func:`search.names.check_study_name`, the record's log must be inside
``.tinyfront/logs``, and a pid is only watched or signalled while it is still the process this app
launched: :func:`launch` records its start time (``/proc/<pid>/stat``, with the boot id) and the
command must be a tinyfront search (:func:`owned`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from explorer.processes import pid_alive
from search.errors import ConfigError
from search.names import check_study_name, contained
from search.storage import STORAGE_ENV, display_url

#: What a run can be: still going, ended with status 0, ended otherwise, stopped from the app.
STATUSES = ("running", "finished", "failed", "stopped")
_NOISE = re.compile(
    r"^([IWEF]\d{4} |WARNING: All log messages|WARNING:absl|INFO:absl|.*cuda|.*cuDNN|.*cuBLAS|.*cuFFT|.*oneDNN|"
    r".*cpu_feature_guard|.*AVX|.*TF-TRT|.*computation_placer|.*rebuild TensorFlow|To enable the following|"
    r".*tensorflow/core/|.*Unable to register|.*absl::InitializeLog)",
    re.IGNORECASE,
)


@dataclass
class RunRecord:
    """One background search as recorded on disk."""

    study: str
    pid: int
    command: list[str]
    started: float
    trials: int
    done_at_start: int
    log: str
    stop_requested: bool = False
    #: ``(boot id, start time in clock ticks)`` of ``pid`` when it was launched; see :func:`owned`.
    start_ticks: int | None = None
    boot_id: str | None = None

    @property
    def rc_path(self) -> Path:
        return Path(self.log).parent.parent / "runs" / f"{self.study}.rc"


@dataclass(frozen=True)
class RunStatus:
    """Where a background search stands: ``state`` in :data:`STATUSES` and its exit code if it ended."""

    state: str
    returncode: int | None


@dataclass(frozen=True)
class Progress:
    """Trials of a study counted from the storage, with time spent and a simple ETA (seconds)."""

    total: int
    done: int
    running: int
    failed: int
    feasible: int
    elapsed: float
    eta: float | None


def _dirs(workdir: Path) -> tuple[Path, Path]:
    runs, logs = workdir / ".tinyfront" / "runs", workdir / ".tinyfront" / "logs"
    runs.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    return runs, logs


def read_run(workdir: Path, study: str) -> RunRecord | None:
    """The run record of ``study``'s latest background search in ``workdir``, or None (also when the
    name, the record or its log path are not acceptable: nothing outside ``.tinyfront`` is read)."""
    try:
        check_study_name(study)
        runs, logs = _dirs(workdir)
        path = contained(runs, f"{study}.json", what="run record")
        if not path.is_file():
            return None
        record = RunRecord(**json.loads(path.read_text()))
        check_study_name(record.study)
        record.log = str(contained(logs, record.log, what="search log"))
    except (ConfigError, OSError, ValueError, TypeError):
        return None
    if record.study != study or isinstance(record.pid, bool) or not isinstance(record.pid, int) or record.pid <= 1:
        return None
    return record


def list_runs(workdir: Path) -> list[str]:
    """Studies with a background-run record in ``workdir``, most recently started first."""
    records = sorted(_dirs(workdir)[0].glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    return [p.stem for p in records if _valid_name(p.stem)]


def _valid_name(name: str) -> bool:
    try:
        check_study_name(name)
    except ConfigError:
        return False
    return True


def _proc_start(pid: int) -> tuple[str | None, int | None]:
    """``(boot id, start time in clock ticks since boot)`` of ``pid``, or Nones when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of proc(5); fields[0] is field 3
    except (OSError, IndexError, ValueError):
        return None, None
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = None
    return boot, ticks


def owned(record: RunRecord) -> bool:
    """True when ``record.pid`` is still the process :func:`launch` started: same start time and boot,
    and its command line is a tinyfront command. A recycled pid, or a pid written into the JSON by
    someone else, is never watched or signalled."""
    if record.start_ticks is None:
        return False
    boot, ticks = _proc_start(record.pid)
    if ticks != record.start_ticks or (record.boot_id is not None and boot != record.boot_id):
        return False
    try:
        argv = Path(f"/proc/{record.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"explorer.cli" in argv


def _write_run(workdir: Path, record: RunRecord) -> None:
    path = _dirs(workdir)[0] / f"{record.study}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(record), indent=2))
    tmp.replace(path)


def run_status(record: RunRecord) -> RunStatus:
    """Is ``record``'s search still running; if not, how did it end."""
    if pid_alive(record.pid) and owned(record):
        return RunStatus("running", None)
    rc: int | None = None
    try:
        rc = int(record.rc_path.read_text().strip())
    except (OSError, ValueError):
        rc = None
    if record.stop_requested:
        return RunStatus("stopped", rc)
    if rc == 0:
        return RunStatus("finished", 0)
    return RunStatus("failed", rc)


def launch(
    workdir: Path, study: str, argv: list[str], *, trials: int, done_at_start: int = 0, storage: str | None = None
) -> RunRecord:
    """Start ``python -m explorer.cli <argv>`` detached in ``workdir``; refuse if ``study`` is already running.

    ``storage`` reaches the command as ``$TINYFRONT_STORAGE``, never on its command line (which every
    user can read with ``ps``); None leaves the variable as this process has it.
    """
    check_study_name(study)
    previous = read_run(workdir, study)
    if previous is not None and run_status(previous).state == "running":
        raise ConfigError(f"a search of study '{study}' is already running (pid {previous.pid}); stop it first")
    runs, logs = _dirs(workdir)
    log = logs / f"{study}.log"
    rc = runs / f"{study}.rc"
    rc.unlink(missing_ok=True)
    command = [sys.executable, "-m", "explorer.cli", *argv]
    # TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notes) stays out of the log the app shows.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", "GRPC_VERBOSITY": "ERROR"}
    if storage is not None:
        env[STORAGE_ENV] = storage
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", '"$@"; echo $? > "$0"', str(rc), *command],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    boot_id, start_ticks = _proc_start(proc.pid)
    record = RunRecord(
        study=study,
        pid=proc.pid,
        start_ticks=start_ticks,
        boot_id=boot_id,
        command=[display_url(a) if "://" in a else a for a in command],  # no password in the record
        started=time.time(),
        trials=trials,
        done_at_start=done_at_start,
        log=str(log),
    )
    _write_run(workdir, record)
    return record


def stop(workdir: Path, record: RunRecord, *, wait: float = 10.0) -> RunStatus:
    """SIGTERM ``record``'s process group, wait up to ``wait`` seconds, then SIGKILL what is left.

    Only a process this app launched and still owns (:func:`owned`) is signalled.
    """
    if not owned(record):
        return run_status(record)
    record.stop_requested = True
    _write_run(workdir, record)
    for sig, grace in ((signal.SIGTERM, wait), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(record.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _group_alive(record.pid):
            pid_alive(record.pid)
            time.sleep(0.2)
        if not _group_alive(record.pid):
            break
    return run_status(record)


def _group_alive(pgid: int) -> bool:
    """True while any live (non-zombie) process is in process group ``pgid``."""
    pid_alive(pgid)  # reap our own child first
    return any(_in_group(p, pgid) for p in _pids())


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _in_group(pid: int, pgid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z" and int(fields[2]) == pgid


def ended_at(record: RunRecord) -> float | None:
    """When ``record``'s search ended (its exit-status file, else its log's last write); None while it runs."""
    if pid_alive(record.pid):
        return None
    for path in (record.rc_path, Path(record.log)):
        try:
            return max(path.stat().st_mtime, record.started)
        except OSError:
            continue
    return None


def log_excerpt(path: str | Path, lines: int = 25) -> str:
    """The last ``lines`` meaningful lines of a search log (TensorFlow's start-up noise and bar redraws dropped)."""
    try:
        text = Path(path).read_bytes().decode(errors="replace")  # keep "\r": read_text would make it "\n"
    except OSError:
        return "(no log file)"
    kept: list[str] = []
    for raw in text.split("\n"):  # not splitlines(): that also splits at the progress bars' "\r" redraws
        line = raw.split("\r")[-1].rstrip()
        if line and not _NOISE.match(line):
            kept.append(line)
    return "\n".join(kept[-lines:]) or "(the log is empty)"


def study_progress(storage: str, study: str, record: RunRecord | None, total: int | None = None) -> Progress:
    """Count ``study``'s trials in ``storage``; elapsed and ETA from ``record`` (the background run)."""
    import optuna
    from optuna.trial import TrialState

    from search.storage import counts_toward_budget, make_storage

    try:
        loaded = optuna.load_study(study_name=study, storage=make_storage(storage))
    except KeyError:
        trials: list[optuna.trial.FrozenTrial] = []
        n_total = total or (record.trials if record else 0)
    else:
        trials = loaded.get_trials(deepcopy=False)
        n_total = total or (record.trials if record else int(loaded.user_attrs.get("n_trials", len(trials))))
    done = sum(counts_toward_budget(t) for t in trials)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    failed = sum(t.state == TrialState.FAIL for t in trials)
    feasible = sum(
        t.state == TrialState.COMPLETE and bool(t.constraints) and all(v <= 0 for v in t.constraints.values())
        for t in trials
    )
    end = ended_at(record) if record is not None and not pid_alive(record.pid) else None
    elapsed = (end or time.time()) - record.started if record else 0.0
    eta: float | None = None
    if record is not None:
        new = done - record.done_at_start
        if new > 0 and done < n_total:
            eta = elapsed / new * (n_total - done)
        elif done >= n_total:
            eta = 0.0
    return Progress(n_total, done, running, failed, feasible, elapsed, eta)
