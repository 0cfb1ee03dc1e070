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
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING

from search.errors import ConfigError

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

DEFAULT_STORAGE = "sqlite:///tinyfront.db"
#: Seconds between heartbeats of a running trial.
HEARTBEAT_INTERVAL = 10
#: Seconds without a heartbeat after which a RUNNING trial is considered dead.
GRACE_PERIOD = 60
#: Seconds a SQLite writer waits for a lock held by another process.
SQLITE_TIMEOUT = 120

FAIL_REASON_KEY = "fail_reason"
INTERRUPTED_REASON = "stopped before finishing (worker killed or interrupted; failed by heartbeat or on exit)"


def normalize_storage_url(url: str) -> str:
    """``url`` with a relative SQLite path made absolute; other URLs unchanged."""
    if not url or "://" not in url:
        raise ConfigError(f"storage must be a database URL such as {DEFAULT_STORAGE} or postgresql://..., got {url!r}")
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
) -> optuna.storages.RDBStorage:
    """An ``RDBStorage`` for ``url`` with heartbeats (and a busy timeout for SQLite)."""
    import optuna

    if heartbeat_interval <= 0 or grace_period <= heartbeat_interval:
        raise ConfigError(
            f"heartbeat interval must be > 0 and grace period > interval, got {heartbeat_interval} and {grace_period}"
        )
    url = normalize_storage_url(url)
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
            )
    except ImportError as exc:
        raise ConfigError(f"the database driver for {url.split(':', 1)[0]} is missing ({exc})") from None
    except Exception as exc:  # SQLAlchemy's OperationalError, ArgumentError, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot open storage {_redact(url)}: {first}") from None


def _redact(url: str) -> str:
    """The URL without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url


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


def fail_stale(study: optuna.Study) -> None:
    """Fail RUNNING trials whose worker stopped beating (no-op without heartbeats)."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optuna.storages.fail_stale_trials(study)
