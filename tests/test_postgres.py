"""Two workers on a real PostgreSQL server complete one study: no duplicated, lost or stuck trials.

The test starts its own server (Debian's ``postgresql`` binaries: initdb + pg_ctl as the
``postgres`` user, listening on a free loopback port, data under ``tmp_path``) and skips with the
reason when the binaries, ``runuser`` or root are missing. ``tmp_path``'s parent folders get the
"others may traverse" bit so the ``postgres`` user can reach its data folder.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from test_study import race_for_one_slot, run_together

from search.data import load_demo
from search.space import SearchSpace
from search.storage import make_storage
from search.study import StudyConfig, create_or_load_study
from search.targets import get_target

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip("PostgreSQL server binaries not found (apt-get install -y postgresql)")
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("starting PostgreSQL as the postgres user needs root and runuser")
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no 'postgres' system user (apt-get install -y postgresql creates it)")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(*args: str, check: bool = True) -> None:
    done = subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True, timeout=300)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:1])} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


@pytest.fixture
def postgres_url(tmp_path: Path) -> Iterator[str]:
    bin_dir = _pg_bin()
    for parent in [tmp_path, *tmp_path.parents]:
        if parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | stat.S_IXOTH)
    data, logfile = tmp_path / "pg", tmp_path / "pg.log"
    data.mkdir()
    shutil.chown(data, "postgres")
    logfile.touch()
    shutil.chown(logfile, "postgres")
    port = _free_port()
    _as_postgres(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    opts = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"
    _as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(logfile), "-w", "-t", "240", "start")
    try:
        _as_postgres(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "tinyfront")
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/tinyfront"
    finally:
        _as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-t", "240", "stop", check=False)


@pytest.mark.slow
def test_two_workers_share_one_study_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    n_trials = 4
    config = StudyConfig(
        target=get_target("nucleo-f446re"),
        study_name="pg",
        storage=postgres_url,
        family="test_study:tiny_cnn",
        space=SearchSpace(width_min=0.25, width_max=0.5, sparsity_max=0.0, precisions=("int8", "float32")),
        sampler="tpe",
        epochs=1,
        finetune_epochs=1,
        artifacts_root=str(tmp_path / "artifacts"),
    )
    study = create_or_load_study(config, load_demo())
    study.set_user_attr("n_trials", n_trials)  # what `tinyfront search` records; workers read it

    worker = [sys.executable, "-m", "explorer.cli", "worker", "--study", "pg", "--storage", postgres_url, "--index"]
    run_together([[*worker, "1"], [*worker, "2"]], tmp_path, timeout=400)

    trials = optuna.load_study(study_name="pg", storage=make_storage(postgres_url)).trials
    numbers = [t.number for t in trials]
    assert numbers == list(range(len(trials)))  # no duplicated or lost trial numbers
    assert len(trials) == n_trials  # the trial-slot lock: no overshoot when both look at the last slot at once
    assert all(t.state.name in ("COMPLETE", "FAIL") for t in trials), [t.state.name for t in trials]
    assert sum(t.state.name == "COMPLETE" for t in trials) >= n_trials
    # every built trial has its own artifacts; a repeated candidate is served from its original's
    dirs = [t.user_attrs["artifacts_dir"] for t in trials if "duplicate_of" not in t.user_attrs]
    assert len(set(dirs)) == len(dirs) and all(Path(d, "result.json").is_file() for d in dirs)
    originals = {t.number: t.user_attrs["artifacts_dir"] for t in trials}
    for t in trials:
        if "duplicate_of" in t.user_attrs:
            assert t.user_attrs["artifacts_dir"] == originals[t.user_attrs["duplicate_of"]]
    # Both worker processes ran trials of the one study.
    assert len({t.user_attrs["worker"] for t in trials}) == 2, [t.user_attrs["worker"] for t in trials]


def test_two_workers_counting_the_last_slot_at_once_take_it_once_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    """The PostgreSQL advisory lock: without it both racers create a trial (see test_study.py)."""
    trials = race_for_one_slot(postgres_url, tmp_path)
    assert [(t.number, t.state.name) for t in trials] == [(0, "COMPLETE")]
