"""The app's working folder, its storage, its studies and the checks on what the browser sends.

Everything the app reads or writes lives in one working folder (``TINYFRONT_WORKDIR``, set by
``tinyfront app --workdir``; the current folder otherwise):

- ``tinyfront.db``: the SQLite Optuna storage (``TINYFRONT_STORAGE`` overrides it with any URL);
- ``tinyfront_artifacts/<study>/trial-N/``: each trial's artifacts;
- ``.tinyfront/``: uploads, background-search run records and logs, built bundles.

Paths typed in the browser go through :func:`inside_workdir`, study names through
:func:`check_study_name`; both raise :class:`~search.errors.ConfigError` saying what to fix.
Session state is initialised in one place, :func:`init_session`.
"""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from search.errors import ConfigError

WORKDIR_ENV = "TINYFRONT_WORKDIR"
STORAGE_ENV = "TINYFRONT_STORAGE"
DB_NAME = "tinyfront.db"
ARTIFACTS_DIR = "tinyfront_artifacts"
STATE_DIR = ".tinyfront"

#: Session keys shared between pages, with their defaults.
SESSION_DEFAULTS: dict[str, Any] = {
    "study": None,  # the study every page shows
    "trial": None,  # the trial the Candidate and Export pages open
    "compare": [],  # trials compared side by side on the Candidate page
    "budget_overrides": {},  # study -> {"flash_kb": .., "sram_kb": .., "latency_ms": ..} from the front sliders
}


def workdir() -> Path:
    """The app's working folder (absolute, resolved); created if missing."""
    path = Path(os.environ.get(WORKDIR_ENV) or os.getcwd()).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def state_dir(*parts: str) -> Path:
    """``<workdir>/.tinyfront/<parts>`` (created)."""
    path = workdir().joinpath(STATE_DIR, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def storage_url() -> str:
    """The Optuna storage URL: ``TINYFRONT_STORAGE`` or the SQLite file in the working folder."""
    return os.environ.get(STORAGE_ENV) or f"sqlite:///{workdir() / DB_NAME}"


def artifacts_root() -> Path:
    return workdir() / ARTIFACTS_DIR


def check_study_name(name: str) -> str:
    """``name`` stripped, checked by the one rule of :func:`search.names.check_study_name`."""
    from search.names import check_study_name as check

    return check(name.strip())


def inside_workdir(path: str | Path, *, must_exist: bool = True) -> Path:
    """``path`` (relative to the working folder, or absolute) resolved; refused when it leaves the folder."""
    text = str(path).strip()
    if not text:
        raise ConfigError("path must not be empty; give a file inside the working folder")
    if "\x00" in text:
        raise ConfigError(f"path must not contain a NUL byte, got {text!r}")
    root = workdir()
    candidate = Path(text).expanduser()
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if not resolved.is_relative_to(root):
        raise ConfigError(f"path must be inside the working folder {root}, got {text!r} (resolves to {resolved})")
    if must_exist and not resolved.exists():
        raise ConfigError(f"nothing at {text!r} inside the working folder {root}; check the name")
    return resolved


def safe_filename(name: str) -> str:
    """A file name made of ``A-Z a-z 0-9 _ . -`` only (the upload's name, path parts dropped)."""
    base = Path(name.replace("\\", "/")).name
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", base).lstrip(".") or "upload"
    return cleaned[:100]


def init_session(session: MutableMapping[str, Any]) -> None:
    """Put every shared key in ``session`` (``st.session_state``) once, with its default."""
    for key, default in SESSION_DEFAULTS.items():
        if key not in session:
            session[key] = default.copy() if isinstance(default, dict | list) else default


def list_studies(storage: str) -> list[str]:
    """Names of the studies in ``storage``, newest first; [] when the SQLite file does not exist yet."""
    if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///") :]).exists():
        return []
    import optuna

    from search.names import check_study_name as check
    from search.storage import make_storage

    summaries = optuna.get_all_study_summaries(make_storage(storage), include_best_trial=False)
    summaries.sort(key=lambda s: getattr(s, "_study_id", 0), reverse=True)
    names = []
    for s in summaries:  # names read back from storage are validated like typed ones; others are not shown
        try:
            names.append(check(s.study_name))
        except ConfigError:
            continue
    return names
