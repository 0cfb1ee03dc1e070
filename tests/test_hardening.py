"""Hostile and faulty inputs (issue 10, items 4-10, 14, 15): one clean line, nothing stored,
nothing read or signalled outside its folder, no secret shown, no storage fault counted as a trial."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import test_postgres

from explorer.cli import main
from search.errors import ConfigError, StorageError
from search.names import check_study_name, contained
from search.space import SearchSpace
from search.storage import display_url, is_storage_fault, load_existing_study, make_storage
from search.study import StudyConfig, check_family
from search.targets import get_target

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
postgres_url = test_postgres.postgres_url  # the fixture: a real PostgreSQL server on a free port


def _run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        rc = main(args)
    except SystemExit as exc:  # argparse refuses an argument: one error line, exit 1 (--help: exit 0)
        rc = int(exc.code or 0)
    return rc, capsys.readouterr().err


# ---------------------------------------------------------------- item 4: values are refused early


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--flash-budget", "nan", "must be a finite number, got 'nan'"),
        ("--sram-budget", "inf", "must be a finite number, got 'inf'"),
        ("--latency-budget", "-2", "must be > 0, got '-2'"),
        ("--width-min", "nan", "must be a finite number"),
        ("--width-step", "nan", "must be a finite number"),
        ("--sparsity-max", "-inf", "must be a finite number"),
        ("--seed", "-1", "must be from 0 to 4294967295"),
        ("--seed", "99999999999999999999", "must be from 0 to 4294967295"),
        ("--trials", "0", "must be >= 1"),
        ("--finetune-epochs", "-1", "must be >= 0"),
        ("--study", "", "study name must be 1-100 characters"),
    ],
)
def test_bad_search_flags_are_refused_before_anything_is_stored(
    flag: str,
    value: str,
    says: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    rc, err = _run_cli(["search", "--target", "stm32l552", "--trials", "1", f"{flag}={value}"], capsys)
    assert rc == 1 and err.count("\n") == 1, err
    assert err.startswith(f"tinyfront search: error: argument {flag}: {says}") and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no tinyfront.db, no artifacts


def test_evaluate_refuses_negative_finetune_epochs(capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = _run_cli(["evaluate", "--target", "stm32l552", "--finetune-epochs", "-1"], capsys)
    assert rc == 1 and err.count("\n") == 1 and "argument --finetune-epochs: must be >= 0, got '-1'" in err


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["search", "--target", "stm32l552", "--trials", "x"],
            "tinyfront search: error: argument --trials: must be a whole number, got 'x'",
        ),
        (["search", "--trials", "3"], "tinyfront search: error: the following arguments are required: --target"),
        (
            ["front", "--study", "../up"],
            "tinyfront front: error: argument --study: study name must be 1-100 characters",
        ),
        (["front"], "tinyfront front: error: the following arguments are required: --study"),
        (
            ["export", "--study", "s", "--trial", "0", "--format", "zip", "-o", "b.zip"],
            "tinyfront export: error: argument --format: invalid choice: 'zip'",
        ),
        (
            ["export", "--study", "s", "--format", "tflm", "-o", "b.zip"],
            "tinyfront export: error: --study needs --trial N",
        ),
        (
            ["worker", "--study", "s", "--storage", "sqlite:///w.db", "--index", "-1"],
            "tinyfront worker: error: argument --index: must be >= 0, got '-1'",
        ),
        (["recheck", "--study", "s"], "tinyfront recheck: error: the following arguments are required: --target"),
        (["targets", "--bogus"], "tinyfront targets: error: unrecognized arguments: --bogus"),
        (["frobnicate"], "tinyfront: error: argument COMMAND: invalid choice: 'frobnicate'"),
        ([], "tinyfront: error: the following arguments are required: COMMAND"),
    ],
)
def test_argument_errors_are_one_line_and_exit_1(
    args: list[str], line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    rc, err = _run_cli(args, capsys)
    assert rc == 1 and err.count("\n") == 1 and err.startswith(line), err
    prog = line.partition(": error:")[0]  # the sub-command's, or tinyfront's when there is none
    assert err.endswith(f" (see {prog} --help)\n"), err
    assert list(tmp_path.iterdir()) == []  # refused before anything was opened or written


def test_argument_errors_of_a_real_process_exit_1_and_help_exits_0(tmp_path: Path) -> None:
    """The real process: exit status and stderr as a shell sees them."""
    env = dict(os.environ, PYTHONPATH=str(REPO))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "explorer.cli", *args]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    bad = cli("search", "--target", "stm32l552", "--trials", "x")
    assert (bad.returncode, bad.stdout) == (1, "")
    assert bad.stderr.splitlines() == [
        "tinyfront search: error: argument --trials: must be a whole number, got 'x' (see tinyfront search --help)"
    ]
    missing = cli("front")
    assert missing.returncode == 1 and missing.stderr.splitlines() == [
        "tinyfront front: error: the following arguments are required: --study (see tinyfront front --help)"
    ]
    helped = cli("search", "--help")
    assert helped.returncode == 0 and helped.stdout.startswith("usage: tinyfront search") and helped.stderr == ""


def test_family_must_be_a_builder_function(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    rc, err = _run_cli(["search", "--target", "stm32l552", "--family", "os:system", "--trials", "1"], capsys)
    assert rc == 1 and err.count("\n") == 1
    assert "tinyfront: error: family 'os:system' must be a Python function returning a tf_keras Model" in err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="must accept \\(input_shape, num_classes, width\\)"):
        check_family("os.path:basename")  # a function, but of one argument
    with pytest.raises(ConfigError, match="cannot import module 'no_such_module_h3b'"):
        check_family("no_such_module_h3b:f")
    assert check_family("test_study:tiny_cnn") == "test_study:tiny_cnn"


def test_study_config_checks_seed_name_and_learning_rate() -> None:
    target = get_target("nucleo-f446re")
    for seed in (-1, 2**32, 99999999999999999999):
        with pytest.raises(ConfigError, match="seed must be an integer from 0 to 4294967295"):
            StudyConfig(target=target, seed=seed)
    assert StudyConfig(target=target, seed=2**32 - 1).seed == 4294967295
    with pytest.raises(ConfigError, match="learning_rate must be a finite number > 0, got nan"):
        StudyConfig(target=target, learning_rate=float("nan"))
    with pytest.raises(ConfigError, match="must be a finite number > 0"):
        target.with_budgets(flash_budget_kb=float("nan"))


def test_search_space_refuses_non_finite_values() -> None:
    for field in ("width_min", "width_max", "sparsity_min", "sparsity_max", "width_step", "sparsity_step"):
        for bad in (float("nan"), float("inf"), float("-inf")):
            with pytest.raises(ConfigError, match=f"{field} must be a finite number"):
                SearchSpace(**{field: bad})


def test_worker_seeds_stay_32_bit(tmp_path: Path) -> None:
    from search.workers import _worker_seed, make_sampler

    study = optuna.create_study(storage=make_storage(f"sqlite:///{tmp_path / 's.db'}"))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    config = StudyConfig(target=get_target("nucleo-f446re"), seed=2**32 - 1)
    seed = _worker_seed(config, study, 2)
    assert seed == (2**32 - 1 + 2000 + 3) % 2**32 == 2002
    make_sampler("random", seed).sample_independent(study, study.trials[0], "x", study.trials[0].distributions["x"])


# ---------------------------------------------------------------- item 7 and 9: names and paths


@pytest.mark.parametrize("name", ["", "a" * 101, "../../escape", "a/b", "/abs/path", ".hidden", "sp ace", "nul\x00"])
def test_one_study_name_rule(name: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="study name must be 1-100 characters"):
        check_study_name(name)
    with pytest.raises(ConfigError, match="study name"):
        StudyConfig(target=get_target("nucleo-f446re"), study_name=name, artifacts_root=str(tmp_path))


def test_good_names_and_contained_paths(tmp_path: Path) -> None:
    for name in ("a", "stm32l552-mobilenet_v1", "kws.v2", "x" * 100):
        assert check_study_name(name) == name
    config = StudyConfig(target=get_target("nucleo-f446re"), study_name="s-1", artifacts_root=str(tmp_path / "art"))
    assert config.study_dir() == (tmp_path / "art" / "s-1").resolve()
    root = tmp_path / "root"
    (root / "inside").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "link").symlink_to(tmp_path / "outside")
    assert contained(root, "inside/f.txt") == (root / "inside" / "f.txt").resolve()
    for bad in ("../outside", "link/f.txt", str(tmp_path / "outside"), "inside/\x00x"):
        with pytest.raises(ConfigError, match="must stay inside|NUL byte"):
            contained(root, bad)


def test_app_paths_refuse_nul_bytes_and_escapes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from explorer.app import state

    monkeypatch.setenv(state.WORKDIR_ENV, str(tmp_path))
    (tmp_path / "data.npz").write_bytes(b"x")
    assert state.inside_workdir("data.npz") == (tmp_path / "data.npz").resolve()
    with pytest.raises(ConfigError, match="NUL byte"):
        state.inside_workdir("data\x00.npz")
    with pytest.raises(ConfigError, match="must be inside the working folder"):
        state.inside_workdir("../../etc/hostname")
    with pytest.raises(ConfigError, match="study name"):
        state.check_study_name("../../../outside_run")


def test_app_lists_only_valid_study_names_from_storage(tmp_path: Path) -> None:
    from explorer.app import state

    url = f"sqlite:///{tmp_path / 'tinyfront.db'}"
    storage = make_storage(url)
    for name in ("good-study", "../../../outside_run", "a/b"):
        optuna.create_study(study_name=name, storage=storage)
    assert state.list_studies(url) == ["good-study"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_record(workdir: Path, file_name: str, **fields: Any) -> None:
    import json

    runs = workdir / ".tinyfront" / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    (runs / f"{file_name}.json").write_text(json.dumps(fields))


def test_app_trusts_no_run_record_name_log_or_pid(tmp_path: Path) -> None:
    from explorer.app import launcher

    workdir = tmp_path / "work"
    workdir.mkdir()
    outside = tmp_path / "outside_run.json"
    outside.write_text('{"study": "x"}')
    # a study name from storage that walks out of .tinyfront/runs
    assert launcher.read_run(workdir, "../../../outside_run") is None
    # a record whose log is outside the logs folder is not used (its log would be shown in the browser)
    victim = subprocess.Popen(["sleep", "60"])
    try:
        common = {"pid": victim.pid, "command": ["x"], "started": 0.0, "trials": 1, "done_at_start": 0}
        _write_record(workdir, "evil", study="evil", log="/etc/hostname", **common)
        assert launcher.read_run(workdir, "evil") is None
        # a record naming an unrelated process (pid written by someone else, no start time recorded)
        log = workdir / ".tinyfront" / "logs" / "forged.log"
        _write_record(workdir, "forged", study="forged", log=str(log), **common)
        record = launcher.read_run(workdir, "forged")
        assert record is not None and not launcher.owned(record)
        assert launcher.run_status(record).state != "running"
        launcher.stop(workdir, record, wait=0.5)
        # ... and a forged start time does not make it ours either
        _write_record(workdir, "forged2", study="forged2", log=str(log), start_ticks=12345, **common)
        record2 = launcher.read_run(workdir, "forged2")
        assert record2 is not None and not launcher.owned(record2)
        launcher.stop(workdir, record2, wait=0.5)
        time.sleep(0.3)
        assert victim.poll() is None, "stop() signalled a process it did not launch"
    finally:
        victim.kill()
        victim.wait()


@pytest.mark.slow
def test_launcher_owns_and_stops_what_it_launched(tmp_path: Path) -> None:
    from explorer.app import launcher

    port = _free_port()
    record = launcher.launch(
        tmp_path, "own", ["app", "--port", str(port), "--workdir", str(tmp_path)], trials=1
    )  # a real, long-running tinyfront command
    assert record.start_ticks is not None and launcher.owned(record)
    assert launcher.run_status(record).state == "running"
    status = launcher.stop(tmp_path, record, wait=20)
    assert status.state == "stopped" and not launcher.owned(record)


# ---------------------------------------------------------------- item 8: secrets


def test_display_url_redacts_passwords() -> None:
    assert display_url("postgresql://user:s3cret@host/db") == "postgresql://user:***@host/db"
    assert display_url("postgresql+psycopg2://u:p@ss:w@rd@db.lan:5432/x") == "postgresql+psycopg2://u:***@db.lan:5432/x"
    assert display_url("mysql://u@h/db?password=s3cret&x=1") == "mysql://u@h/db?password=***&x=1"
    assert display_url("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"
    assert display_url("postgresql://user@host/db") == "postgresql://user@host/db"


@pytest.mark.parametrize("command", ["front", "recheck", "worker", "export"])
def test_storage_errors_never_show_the_password(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"postgresql+psycopg2://tinyfront:s3cret-pw@127.0.0.1:{_free_port()}/tinyfront"  # nothing listens there
    extra = {
        "front": [],
        "recheck": ["--target", "stm32l552"],
        "worker": [],
        "export": ["--trial", "0", "--format", "tflm", "-o", str(tmp_path / "b.zip")],
    }[command]
    rc, err = _run_cli([command, "--study", "s", "--storage", url, *extra], capsys)
    assert rc == 1 and err.count("\n") == 1, err
    assert "s3cret-pw" not in err and "tinyfront:***@127.0.0.1" in err


def test_search_start_line_is_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"postgresql+psycopg2://u:hunter2@127.0.0.1:{_free_port()}/d"
    rc, err = _run_cli(["search", "--target", "stm32l552", "--storage", url], capsys)
    lines = err.splitlines()
    assert rc == 1 and "hunter2" not in err
    assert lines[0].startswith("study stm32l552-mobilenet_v1 in postgresql+psycopg2://u:***@127.0.0.1")
    assert lines[-1].startswith("tinyfront: error: cannot open storage postgresql+psycopg2://u:***@127.0.0.1")


def test_commands_without_storage_use_tinyfront_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'env.db'}"
    optuna.create_study(study_name="there", storage=make_storage(url))
    monkeypatch.setenv("TINYFRONT_STORAGE", url)
    for args in (
        ["front", "--study", "nope"],
        ["recheck", "--study", "nope", "--target", "stm32l552"],
        ["worker", "--study", "nope"],
        ["export", "--study", "nope", "--trial", "0", "--format", "tflm", "-o", "b.zip"],
    ):
        rc, err = _run_cli(args, capsys)
        assert rc == 1 and err == f"tinyfront: error: no study 'nope' in {url}; studies there: there\n", err
    # an explicit --storage wins over the environment
    other = f"sqlite:///{tmp_path / 'other.db'}"
    rc, err = _run_cli(["front", "--study", "nope", "--storage", other], capsys)
    assert rc == 1 and f"no study 'nope' in {other}: the storage file does not exist" in err
    # search reads it too (a dead PostgreSQL port: it names the storage, redacted, and stops)
    monkeypatch.setenv("TINYFRONT_STORAGE", f"postgresql+psycopg2://u:hunter2@127.0.0.1:{_free_port()}/d")
    rc, err = _run_cli(["search", "--target", "stm32l552"], capsys)
    assert rc == 1 and "hunter2" not in err and " in postgresql+psycopg2://u:***@127.0.0.1:" in err.splitlines()[0]
    # a worker has no default storage: one of the two is needed
    monkeypatch.delenv("TINYFRONT_STORAGE")
    rc, err = _run_cli(["worker", "--study", "nope"], capsys)
    assert (rc, err) == (1, "tinyfront: error: no storage given: pass --storage URL or set TINYFRONT_STORAGE\n")
    assert list(tmp_path.iterdir()) == [tmp_path / "env.db"]  # no default tinyfront.db was created


@pytest.mark.parametrize(
    ("command", "says"),
    [
        ("front", "(default: $TINYFRONT_STORAGE when set, else sqlite:///tinyfront.db)"),
        ("search", "(default: $TINYFRONT_STORAGE when set, else sqlite:///tinyfront.db)"),
        ("worker", "(default: $TINYFRONT_STORAGE; one of the two is required)"),
    ],
)
def test_storage_help_names_the_environment_variable(
    command: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert says in " ".join(capsys.readouterr().out.split())


def _spy_on_children(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], dict[str, str]]]:
    """The argv and environment of every process started from here on (``subprocess.run`` too)."""
    seen: list[tuple[list[str], dict[str, str]]] = []

    class Spy(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, args: list[str], *rest: Any, **kwargs: Any) -> None:
            seen.append(([str(a) for a in args], dict(kwargs.get("env") or os.environ)))
            super().__init__(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", Spy)
    return seen


def test_app_children_get_the_storage_in_their_environment_not_their_argv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command line is readable by every user (ps): the app hands the URL (and its password) to
    `tinyfront search` and `tinyfront export` as $TINYFRONT_STORAGE, and they reach that storage."""
    from explorer.app import exports, forms, launcher, state
    from search.errors import ExportError

    monkeypatch.setenv(state.WORKDIR_ENV, str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the children run this checkout's tinyfront
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"  # not the working folder's tinyfront.db
    optuna.create_study(study_name="there", storage=make_storage(url))
    board = get_target("nucleo-f446re")
    form = forms.SearchForm(
        study="s",
        target=board.name,
        flash_budget_kb=board.flash_budget_kb,
        sram_budget_kb=board.sram_budget_kb,
        latency_budget_ms=board.latency_budget_ms,
        precisions=("int8",),
    )
    argv = forms.search_argv(form, url)
    assert argv[:5] == ["search", "--target", board.name, "--study", "s"]
    assert "--storage" not in argv and not any("elsewhere.db" in a for a in argv)

    seen = _spy_on_children(monkeypatch)
    record = launcher.launch(tmp_path, "nope", ["front", "--study", "nope"], trials=1, storage=url)
    deadline = time.monotonic() + 180  # a loaded 2-core machine starts Python slowly
    while launcher.run_status(record).state == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert launcher.run_status(record).returncode == 1
    assert f"no study 'nope' in {url}; studies there: there" in launcher.log_excerpt(record.log)

    with pytest.raises(ExportError, match=f"no study 'nope' in {url}; studies there: there"):
        exports.build_bundle(url, "nope", 0, "tflm")

    assert len(seen) == 2  # the background search's shell wrapper, the export
    for child_argv, child_env in seen:
        assert "explorer.cli" in child_argv and "--storage" not in child_argv
        assert not any("elsewhere.db" in a for a in child_argv), child_argv
        assert child_env[state.STORAGE_ENV] == url


# ---------------------------------------------------------------- item 15: read-only commands write nothing


@pytest.mark.parametrize(
    "args",
    [
        ["front", "--study", "nope"],
        ["recheck", "--study", "nope", "--target", "stm32l552"],
        ["export", "--study", "nope", "--trial", "0", "--format", "tflm", "-o", "b.zip"],
    ],
)
def test_read_only_commands_create_no_storage(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    rc, err = _run_cli(args, capsys)
    assert rc == 1 and "no study 'nope' in sqlite:///" in err and "the storage file does not exist" in err
    assert err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
    # a foreign SQLite file gets no Optuna tables
    foreign = tmp_path / "app.db"
    with sqlite3.connect(foreign) as con:
        con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    before = hashlib.sha256(foreign.read_bytes()).hexdigest()
    rc, err = _run_cli([*args, "--storage", f"sqlite:///{foreign}"], capsys)
    assert rc == 1 and "is not an Optuna storage" in err
    assert hashlib.sha256(foreign.read_bytes()).hexdigest() == before
    with sqlite3.connect(foreign) as con:
        assert [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["notes"]


def test_missing_study_in_a_real_storage_lists_the_studies(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    optuna.create_study(study_name="there", storage=make_storage(url))
    with pytest.raises(ConfigError, match="no study 'nope' in sqlite:///.*studies there: there"):
        load_existing_study(url, "nope")
    assert [s.study_name for s in optuna.get_all_study_summaries(make_storage(url))] == ["there"]


# ---------------------------------------------------------------- item 5: one line, not a traceback


def test_failed_trial_logs_one_line_and_ctrl_c_logs_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from search.workers import optimize_until

    study = optuna.create_study(storage=make_storage(f"sqlite:///{tmp_path / 'f.db'}"))

    def objective(trial: optuna.trial.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        if trial.number == 1:
            raise ValueError("candidate broke")
        if trial.number == 3:
            raise KeyboardInterrupt
        return x

    caplog.set_level(logging.WARNING, logger="optuna")
    optuna.logging.enable_propagation()  # Optuna's logger does not propagate to caplog's handler by default
    try:
        with pytest.raises(KeyboardInterrupt):
            optimize_until(study, objective, 5)  # type: ignore[arg-type]
    finally:
        optuna.logging.disable_propagation()
    failed = [r for r in caplog.records if r.name.startswith("optuna") and " failed " in r.getMessage()]
    assert len(failed) == 1, [r.getMessage() for r in failed]
    assert "Trial 1 failed" in failed[0].getMessage() and "candidate broke" in failed[0].getMessage()
    assert failed[0].exc_info is None and "\n" not in failed[0].getMessage()


def test_export_to_an_unwritable_place_is_one_line(
    mlperf_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    model = mlperf_dir / "kws_ref_model.tflite"
    for out in (blocker / "bundle.zip", Path("/proc/bundle.zip")):
        rc, err = _run_cli(["export", "--tflite", str(model), "--format", "tflm", "-o", str(out)], capsys)
        assert rc == 1 and err.startswith("tinyfront: error: ") and err.count("\n") == 1, err


def test_app_with_a_bad_host_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = _run_cli(["app", "--host", "999.1.1.1", "--port", str(_free_port())], capsys)
    assert rc == 1 and err.count("\n") == 1 and "--host '999.1.1.1' is not an address to listen on" in err


# ---------------------------------------------------------------- item 14: SIGTERM stops the Streamlit child


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _default_signals() -> None:
    """In the child before exec: SIGTERM, SIGHUP and SIGINT at their defaults. A suite started with
    ``nohup cmd &`` ignores SIGHUP and SIGINT, and children inherit that; `tinyfront app` then
    (rightly) leaves SIGHUP ignored."""
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_app_forwards_sigterm_to_streamlit(sig: signal.Signals, tmp_path: Path) -> None:
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "explorer.cli", "app", "--port", str(port), "--workdir", str(tmp_path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # so the signal reaches only `tinyfront app`, as `kill <pid>` does
        preexec_fn=_default_signals,  # as from a terminal, even when this suite runs under nohup
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        else:
            pytest.fail("the app did not start serving within 120 s")
        children = _children(proc.pid)
        assert children, "tinyfront app runs Streamlit as a child"
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(Path(f"/proc/{c}").exists() for c in children):
            time.sleep(0.2)
        assert not any(Path(f"/proc/{c}").exists() for c in children), "Streamlit still runs"
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # the port is free again for the next `tinyfront app`
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ---------------------------------------------------------------- item 6: storage faults are not candidates


def test_storage_faults_are_told_from_candidate_failures(tmp_path: Path) -> None:
    import sqlalchemy.exc

    locked = sqlite3.OperationalError("database is locked")
    wrapped = sqlalchemy.exc.OperationalError("UPDATE trials", {}, locked)
    assert is_storage_fault(wrapped) and is_storage_fault(optuna.exceptions.StorageInternalError("x"))
    try:
        try:
            raise wrapped
        except Exception as inner:
            raise RuntimeError("while recording") from inner
    except RuntimeError as outer:
        assert is_storage_fault(outer)
    assert not is_storage_fault(ValueError("bad width")) and not is_storage_fault(ConfigError("x"))


_LOCK: dict[str, Any] = {}


def locking_cnn(input_shape: tuple[int, int, int], num_classes: int, width: float) -> Any:
    """A real tiny model, whose first build also locks the study's SQLite file (another process would)."""
    from test_study import tiny_cnn

    if "con" not in _LOCK and os.environ.get("H3B_LOCK_DB"):
        con = sqlite3.connect(os.environ["H3B_LOCK_DB"], timeout=0, isolation_level=None)
        con.execute("BEGIN EXCLUSIVE")
        _LOCK["con"] = con
    return tiny_cnn(input_shape, num_classes, width)


def overwriting_cnn(input_shape: tuple[int, int, int], num_classes: int, width: float) -> Any:
    """A real tiny model, whose build overwrites the study's SQLite file with garbage."""
    from test_study import tiny_cnn

    Path(os.environ["H3B_OVERWRITE_DB"]).write_bytes(b"not a database " * 4096)
    return tiny_cnn(input_shape, num_classes, width)


@pytest.mark.slow
def test_locked_database_mid_trial_is_a_storage_fault_not_a_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import search.storage
    from search.data import load_demo
    from search.storage import counts_toward_budget
    from search.workers import run_worker

    db = tmp_path / "study.db"
    monkeypatch.setattr(search.storage, "SQLITE_TIMEOUT", 1)
    monkeypatch.setenv("H3B_LOCK_DB", str(db))
    _LOCK.clear()
    config = StudyConfig(
        target=get_target("nucleo-f446re"),
        study_name="locked",
        storage=f"sqlite:///{db}",
        family="test_hardening:locking_cnn",
        space=SearchSpace(width_min=0.25, width_max=0.25, sparsity_max=0.0, precisions=("int8",)),
        epochs=1,
        finetune_epochs=1,
        artifacts_root=str(tmp_path / "artifacts"),
        heartbeat_interval=1,
        grace_period=3,
    )
    data = load_demo()
    with pytest.raises(StorageError, match=r"storage fault on sqlite:///.*database is locked.*not counted"):
        run_worker(config, 1, dataset=data)
    _LOCK["con"].rollback()
    _LOCK["con"].close()
    trials = optuna.load_study(study_name="locked", storage=make_storage(config.storage)).trials
    assert len(trials) == 1 and "fail_reason" not in trials[0].user_attrs
    assert not counts_toward_budget(trials[0])  # the budget is untouched
    # Resuming after the fault: the interrupted trial is failed by heartbeat and one real trial runs.
    study = run_worker(config, 1, dataset=data)
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "COMPLETE"] and sum(counts_toward_budget(t) for t in study.trials) == 1


@pytest.mark.slow
def test_database_overwritten_mid_run_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "study.db"
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(TESTS), str(REPO)]),
        H3B_OVERWRITE_DB=str(db),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    args = ["--target", "nucleo-f446re", "--family", "test_hardening:overwriting_cnn", "--trials", "1"]
    args += ["--width-min", "0.25", "--width-max", "0.25", "--sparsity-max", "0", "--precisions", "int8"]
    args += ["--epochs", "1", "--finetune-epochs", "1", "--storage", f"sqlite:///{db}", "--study", "over"]
    done = subprocess.run(
        [sys.executable, "-m", "explorer.cli", "search", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("tinyfront: error:")]
    assert len(errors) == 1 and "storage fault on sqlite:///" in errors[0], done.stderr[-3000:]


# ---------------------------------------------------------------- item 10: the base-model cache


@pytest.mark.slow
def test_planted_hdf5_with_a_lambda_is_not_loaded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from search._lazy import keras
    from search.data import load_demo
    from search.training import TrainSettings, base_key, digest_path, train_base

    k = keras()
    data = load_demo()
    settings = TrainSettings(epochs=1, batch_size=64, seed=0)
    shape = tuple(int(d) for d in data.x_train.shape[1:])
    key = base_key(data.fingerprint, "mobilenet_v1", 0.25, shape, settings)
    cache = tmp_path / "base_models"
    cache.mkdir()
    marker = tmp_path / "code-ran"
    inputs = k.Input(shape=shape)
    ran = k.layers.Lambda(lambda x, p=str(marker): (__import__("pathlib").Path(p).write_text("pwned"), x)[1])(inputs)
    flat = k.layers.Flatten()(ran)
    evil = k.Model(inputs, k.layers.Dense(data.num_classes, activation="softmax")(flat))
    marker.unlink(missing_ok=True)
    evil.save(tmp_path / "evil.h5")
    k.models.load_model(tmp_path / "evil.h5", safe_mode=False)  # the plant is real: loading it runs its code
    assert marker.read_text() == "pwned"
    planted = cache / f"{key}.keras"
    (tmp_path / "evil.h5").rename(planted)
    digest_path(planted).write_text(hashlib.sha256(planted.read_bytes()).hexdigest())  # even with a matching digest
    marker.unlink(missing_ok=True)

    caplog.set_level(logging.WARNING, logger="search.training")
    model, reused = train_base(
        "mobilenet_v1", 0.25, data.x_train, data.y_train, data.num_classes, settings, cache_dir=cache, key=key
    )
    assert not reused and not marker.exists(), "the planted HDF5 file was loaded"
    assert any("not a .keras zip" in r.getMessage() for r in caplog.records)
    assert not any(isinstance(layer, k.layers.Lambda) for layer in model.layers)
    # the rebuilt entry is a .keras zip with its digest, and is reused next time
    assert digest_path(planted).read_text().strip() == hashlib.sha256(planted.read_bytes()).hexdigest()
    _, reused = train_base(
        "mobilenet_v1", 0.25, data.x_train, data.y_train, data.num_classes, settings, cache_dir=cache, key=key
    )
    assert reused
    # a cached file changed after it was saved is a miss too
    with open(planted, "ab") as f:
        f.write(b"\0")
    caplog.clear()
    _, reused = train_base(
        "mobilenet_v1", 0.25, data.x_train, data.y_train, data.num_classes, settings, cache_dir=cache, key=key
    )
    assert not reused and any("SHA-256" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_postgres_no_study_errors_are_redacted_and_create_no_tables(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlalchemy

    postgres_url = str(request.getfixturevalue("postgres_url"))
    monkeypatch.chdir(tmp_path)
    url = postgres_url.replace("://postgres@", "://postgres:s3cret-pw@")  # trust auth: the password is not needed
    for args in (
        ["front", "--study", "nope"],
        ["recheck", "--study", "nope", "--target", "stm32l552"],
        ["worker", "--study", "nope"],
        ["export", "--study", "nope", "--trial", "0", "--format", "tflm", "-o", str(tmp_path / "b.zip")],
    ):
        rc, err = _run_cli([*args, "--storage", url], capsys)
        assert rc == 1 and err.count("\n") == 1, err
        assert "s3cret-pw" not in err and "postgres:***@127.0.0.1" in err, err
    engine = sqlalchemy.create_engine(postgres_url)
    with engine.connect() as con:
        assert sqlalchemy.inspect(con).get_table_names() == []  # read-only commands created no Optuna tables
    engine.dispose()
    optuna.create_study(study_name="there", storage=make_storage(url))
    rc, err = _run_cli(["front", "--study", "nope", "--storage", url], capsys)
    assert rc == 1 and "no study 'nope' in postgresql+psycopg2://postgres:***@127.0.0.1" in err
    assert "studies there: there" in err and "s3cret-pw" not in err
