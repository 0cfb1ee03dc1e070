"""Optuna storage for tinyfront studies: any RDB URL, heartbeats, and how trials count.

- :func:`make_storage` opens an ``RDBStorage`` with a heartbeat, so a worker killed mid-trial
  (SIGKILL, power loss) leaves a RUNNING trial that the next worker or resumed search fails once
  ``grace_period`` seconds pass without a beat (``optuna.storages.fail_stale_trials``). SQLite gets
  a busy timeout so several local processes can share one file.
- Relative SQLite paths (the default ``sqlite:///tinyfront.db``) are made absolute against the
  current folder, so spawned worker processes open the same file.
- :func:`counts_toward_budget`: COMPLETE and PRUNED trials count, and so does a FAIL trial whose
  candidate raised (it carries a ``fail_reason``): a candidate that cannot be built is an answer
  the search paid for. A FAIL trial without a reason was interrupted (Ctrl-C, a killed worker
  failed by heartbeat) and does not count, so resuming replaces it.
- :func:`display_url` is the one way a storage URL is shown (password redacted); every message
  that names a storage uses it.
- ``TINYFRONT_STORAGE`` (:data:`STORAGE_ENV`) is the storage of a command given no ``--storage``
  (:func:`storage_from_env`). It is how a parent hands a URL to a child process: a child's command
  line is readable by every user of the machine (``ps``), its environment only by its owner.
- Read-only commands open a storage with ``read_only=True``: a SQLite file that does not exist is
  not created, a file without Optuna's tables gets none (:func:`load_existing_study`).
- :func:`trial_slots` is held by a worker from counting a study's trials until its next trial
  exists in the storage, so workers that look at the last free slot at the same moment do not
  both take it (a search of ``n_trials`` ran ``n_trials + 1`` now and then with 2 workers). On
  SQLite it is an ``flock`` on ``<database file>.slots.lock`` beside the file; on PostgreSQL a
  session advisory lock per study; other databases get none.
- :func:`is_storage_fault` tells a failing database (locked too long, overwritten, unreachable)
  from a failing candidate, so the search reports it as a :class:`~search.errors.StorageError`
  and does not spend a trial of the budget on it.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from search.errors import ConfigError, StorageError, TinyfrontError

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

DEFAULT_STORAGE = "sqlite:///tinyfront.db"
#: The environment variable holding the storage URL of a command given no ``--storage``.
STORAGE_ENV = "TINYFRONT_STORAGE"
_CHECK_STORAGE = f"check --storage or ${STORAGE_ENV}"
#: Seconds between heartbeats of a running trial.
HEARTBEAT_INTERVAL = 10
#: Seconds without a heartbeat after which a RUNNING trial is considered dead.
GRACE_PERIOD = 60
#: Seconds a SQLite writer waits for a lock held by another process.
SQLITE_TIMEOUT = 120

FAIL_REASON_KEY = "fail_reason"
INTERRUPTED_REASON = "stopped before finishing (worker killed or interrupted; failed by heartbeat or on exit)"


def storage_from_env(fallback: str | None = DEFAULT_STORAGE) -> str | None:
    """``$TINYFRONT_STORAGE`` when set and not empty, else ``fallback``."""
    return os.environ.get(STORAGE_ENV) or fallback


def normalize_storage_url(url: str) -> str:
    """``url`` with a relative SQLite path made absolute; other URLs unchanged."""
    if not url or "://" not in url:
        raise ConfigError(
            f"storage must be a database URL such as {DEFAULT_STORAGE} or postgresql://..., got {display_url(url)!r}"
        )
    prefix = "sqlite:///"
    if url.startswith(prefix) and url != "sqlite:///:memory:":
        path = url[len(prefix) :]
        if not os.path.isabs(path):
            return prefix + os.path.abspath(path)
    return url


def make_storage(
    url: str = DEFAULT_STORAGE,
    *,
    heartbeat_interval: int = HEARTBEAT_INTERVAL,
    grace_period: int = GRACE_PERIOD,
    read_only: bool = False,
) -> optuna.storages.RDBStorage:
    """An ``RDBStorage`` for ``url`` with heartbeats (and a busy timeout for SQLite).

    ``read_only``: refuse (ConfigError) a SQLite file that does not exist or holds no Optuna
    tables instead of creating them, and never create tables in any database.
    """
    import optuna

    if heartbeat_interval <= 0 or grace_period <= heartbeat_interval:
        raise ConfigError(
            f"heartbeat interval must be > 0 and grace period > interval, got {heartbeat_interval} and {grace_period}"
        )
    url = normalize_storage_url(url)
    if read_only:
        _check_sqlite_readable(url)
    engine_kwargs: dict[str, object] = {}
    if url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT}
    else:
        engine_kwargs["pool_pre_ping"] = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats are "experimental"
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                skip_table_creation=read_only,
            )
    except ImportError as exc:
        raise ConfigError(f"the database driver for {url.split(':', 1)[0]} is missing ({exc})") from None
    except Exception as exc:  # SQLAlchemy's OperationalError, ArgumentError, ...
        raise ConfigError(f"cannot open storage {display_url(url)}: {display_error(exc, url)}") from None


_USERINFO = re.compile(r"^(?P<scheme>[^:/?#]+://)(?P<user>[^:@/?#]*):(?P<password>.*)@(?P<host>[^@]*)$", re.DOTALL)
_QUERY_SECRET = re.compile(r"(?i)([?&](?:password|passwd|pwd|sslpassword)=)[^&#]*")


def display_url(url: str) -> str:
    """``url`` as every message shows it: the password replaced by ``***``
    (``postgresql://user:***@host/db``; also a ``?password=`` query parameter)."""
    text = str(url)
    m = _USERINFO.match(text)
    if m:
        text = f"{m['scheme']}{m['user']}:***@{m['host']}"
    return _QUERY_SECRET.sub(r"\1***", text)


def display_error(exc: BaseException, url: str) -> str:
    """First line of ``exc``'s message with any form of ``url``'s password removed."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    m = _USERINFO.match(url)
    if m and m["password"]:
        first = first.replace(m["password"], "***")
    return first


def _sqlite_path(url: str) -> str | None:
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == "sqlite:///:memory:":
        return None
    return url[len(prefix) :].split("?", 1)[0]


def _check_sqlite_readable(url: str) -> None:
    """ConfigError unless ``url``'s SQLite file exists and holds Optuna's tables (nothing is written)."""
    path = _sqlite_path(url)
    if path is None:
        return
    if not os.path.isfile(path):
        raise ConfigError(f"no storage file {path} (nothing has been searched there yet; {_CHECK_STORAGE})")
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=SQLITE_TIMEOUT)
        try:
            rows = con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise ConfigError(f"{path} is not a readable SQLite database: {exc}") from None
    if not {"studies", "trials", "version_info"} <= {r[0] for r in rows}:
        raise ConfigError(f"{path} is not an Optuna storage (it has no Optuna tables); {_CHECK_STORAGE}")


def load_existing_study(url: str, study_name: str) -> optuna.Study:
    """``study_name`` in ``url`` opened read-only; ConfigError naming the studies there when it is missing.

    Nothing is created: not the SQLite file, not Optuna's tables, not the study.
    """
    import optuna

    path = _sqlite_path(normalize_storage_url(url))
    if path is not None and not os.path.isfile(path):
        raise ConfigError(
            f"no study '{study_name}' in {display_url(url)}: the storage file does not exist ({_CHECK_STORAGE})"
        )
    storage = make_storage(url, read_only=True)
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        pass
    except Exception as exc:  # e.g. PostgreSQL without Optuna's tables
        raise ConfigError(
            f"cannot read studies from {display_url(url)} (not an Optuna storage?): {display_error(exc, url)}"
        ) from None
    names = ", ".join(s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False))
    raise ConfigError(f"no study '{study_name}' in {display_url(url)}; studies there: {names or 'none'}")


def is_storage_fault(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) is the database failing, not the candidate."""
    return find_storage_fault(exc) is not None


def find_storage_fault(exc: BaseException) -> BaseException | None:
    """The innermost database error in ``exc``'s chain (``database is locked``, ``file is not a
    database``, ...), or None. A :class:`~search.errors.TinyfrontError` ends the search: it already
    says what went wrong in its own words."""
    import optuna

    kinds: tuple[type[BaseException], ...] = (optuna.exceptions.StorageInternalError, sqlite3.Error)
    try:
        import sqlalchemy.exc

        kinds = (*kinds, sqlalchemy.exc.DBAPIError, sqlalchemy.exc.InvalidRequestError)
    except ImportError:  # pragma: no cover - optuna's RDB storage needs SQLAlchemy
        pass
    found: BaseException | None = None
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, TinyfrontError):
            break
        if isinstance(current, kinds):
            found = current
        seen.add(id(current))
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return found


def storage_fault(exc: BaseException, url: str) -> StorageError:
    """The one-line :class:`StorageError` for a storage fault on ``url`` (naming its innermost cause)."""
    exc = find_storage_fault(exc) or exc
    return StorageError(
        f"storage fault on {display_url(url)}: {type(exc).__name__}: {display_error(exc, url)} (the database "
        "failed, not a candidate: finished trials are kept, a trial it interrupted is not counted; fix the "
        "storage and run the same command again to resume)"
    )


def counts_toward_budget(trial: FrozenTrial) -> bool:
    """True for trials that used up one of the study's ``n_trials`` (see module docstring)."""
    from optuna.trial import TrialState

    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and FAIL_REASON_KEY in trial.user_attrs


def fail_reason(trial: FrozenTrial) -> str | None:
    """Why a FAIL trial failed (its recorded reason, or the interrupted note); None for other states."""
    from optuna.trial import TrialState

    if trial.state != TrialState.FAIL:
        return None
    return str(trial.user_attrs.get(FAIL_REASON_KEY, INTERRUPTED_REASON))


def storage_backend(study: optuna.Study) -> Any:
    """The storage behind ``study``: the RDB storage itself (with its ``url`` and ``engine``), not
    Optuna's cache that wraps it."""
    return getattr(study._storage, "_backend", study._storage)


def fail_stale(study: optuna.Study) -> None:
    """Fail RUNNING trials whose worker stopped beating (no-op without heartbeats)."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optuna.storages.fail_stale_trials(study)


class TrialSlots:
    """A lock over a study's trial slots, shared by every worker of the study (:func:`trial_slots`).

    :meth:`acquire` before counting the study's trials; :meth:`release` once the new trial exists
    in the storage (:meth:`releasing` wraps an objective so that it releases first), or when there
    is no slot to take. Both may be called again without effect.
    """

    def __init__(self, acquire: Callable[[], None] | None = None, release: Callable[[], None] | None = None) -> None:
        self._acquire, self._release = acquire, release
        self.held = False

    def acquire(self) -> None:
        if not self.held and self._acquire is not None:
            self._acquire()
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False  # first: a release that fails (a lost database connection) is not retried
            if self._release is not None:
                self._release()

    def releasing(self, objective: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``objective``, releasing the lock first: Optuna calls it once the trial is in the storage."""

        def run(trial: Any) -> Any:
            self.release()
            return objective(trial)

        return run


@contextmanager
def trial_slots(study: optuna.Study) -> Iterator[TrialSlots]:
    """The lock over ``study``'s trial slots for this worker (released and closed at the end).

    SQLite: ``flock`` on ``<database file>.slots.lock`` (the kernel drops it with a killed worker).
    PostgreSQL: ``pg_advisory_lock`` on a connection of its own, keyed by the study name (the
    server drops it with the connection). Any other storage, or a system without ``fcntl``: no lock.
    """
    backend = storage_backend(study)
    url = str(getattr(backend, "url", ""))
    path = _sqlite_path(url)
    if path is not None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not on Linux or macOS
            yield TrialSlots()
            return
        fd = os.open(path + ".slots.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            yield TrialSlots(lambda: fcntl.flock(fd, fcntl.LOCK_EX), lambda: fcntl.flock(fd, fcntl.LOCK_UN))
        finally:
            os.close(fd)  # drops the lock too
        return
    engine: Any = getattr(backend, "engine", None)
    if url.startswith("postgresql") and engine is not None:
        from sqlalchemy import text

        name = f"tinyfront trial slots: {study.study_name}".encode()
        key = int.from_bytes(hashlib.sha256(name).digest()[:8], "big", signed=True)
        with engine.connect() as connection:
            conn = connection.execution_options(isolation_level="AUTOCOMMIT")  # no transaction left open meanwhile

            def lock() -> None:
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})

            def unlock() -> None:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})

            slots = TrialSlots(lock, unlock)
            try:
                yield slots
            finally:
                slots.release()
        return
    yield TrialSlots()
