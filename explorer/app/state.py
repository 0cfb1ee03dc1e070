"""The app's working folder, its storage, its studies and the checks on what the browser sends.

Everything the app reads or writes lives in one working folder (``TINYFRONT_WORKDIR``, set by
``tinyfront app --workdir``; the current folder otherwise):

- ``tinyfront.db``: the SQLite Optuna storage (``TINYFRONT_STORAGE`` overrides it with any URL);
- ``tinyfront_artifacts/<study>/trial-N/``: each trial's artifacts;
- ``.tinyfront/``: uploads, background-search run records and logs, built bundles.

Paths typed in the browser go through :func:`inside_workdir`, study names through
:func:`check_study_name`; both raise :class:`~search.errors.ConfigError` saying what to fix.
Session state is initialised in one place, :func:`init_session`. The what-if budgets live in one
place too, ``session["budget_overrides"][study]`` (only the budgets that differ from the study's),
read by every page through :func:`budget_overrides` and changed only by :func:`set_budget` and
:func:`clear_budgets`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from explorer.report import display_unit as display_unit  # the one spelling of units, re-exported
from search.errors import ConfigError
from search.storage import STORAGE_ENV as STORAGE_ENV  # the CLI's variable too: children get the URL through it
from search.storage import storage_from_env

WORKDIR_ENV = "TINYFRONT_WORKDIR"
DB_NAME = "tinyfront.db"
ARTIFACTS_DIR = "tinyfront_artifacts"
STATE_DIR = ".tinyfront"

#: Session keys shared between pages, with their defaults.
SESSION_DEFAULTS: dict[str, Any] = {
    "study": None,  # the study every page shows
    "trial": None,  # the trial the Candidate and Export pages open
    "compare": [],  # trials compared side by side on the Candidate page
    "budget_overrides": {},  # study -> {"flash_kb": .., "sram_kb": .., "latency_ms": ..}: what-if budgets
}
#: Budget keys in display order, with their label and unit.
BUDGET_FIELDS: dict[str, tuple[str, str]] = {
    "flash_kb": ("Flash", "KiB"),
    "sram_kb": ("SRAM", "KiB"),
    "latency_ms": ("Latency", "ms"),
}


def budget_key(session: Mapping[str, Any], study: str, key: str) -> str:
    """The widget key of the what-if input of ``key`` (flash_kb, sram_kb, latency_ms) for ``study``.

    It carries a generation that :func:`clear_budgets` bumps: after a reset the inputs are new
    widgets, drawn from the one budget state, so no stale widget value can come back.
    """
    generations = session["budget_generation"] if "budget_generation" in session else {}
    generation = int(generations.get(study, 0))
    return f"budget_{study}_{key}_{generation}"


def budget_overrides(session: MutableMapping[str, Any], study: str) -> dict[str, float]:
    """The what-if budgets of ``study`` in this browser session (empty when none is active)."""
    return dict(session.get("budget_overrides", {}).get(study, {}))


def set_budget(session: MutableMapping[str, Any], study: str, key: str, value: float, own: float) -> None:
    """Override ``study``'s budget ``key`` with ``value``; the study's own value ``own`` removes the override."""
    if key not in BUDGET_FIELDS:
        raise ConfigError(f"unknown budget '{key}'; expected one of: {', '.join(BUDGET_FIELDS)}")
    if not value > 0:
        raise ConfigError(f"{BUDGET_FIELDS[key][0].lower()} budget must be > 0 {BUDGET_FIELDS[key][1]}, got {value:g}")
    overrides = session.setdefault("budget_overrides", {})
    mine = dict(overrides.get(study, {}))
    if abs(value - own) <= 1e-9 * max(1.0, abs(own)):
        mine.pop(key, None)
    else:
        mine[key] = float(value)
    overrides[study] = mine


def clear_budgets(session: MutableMapping[str, Any], study: str) -> None:
    """Drop ``study``'s what-if budgets; its inputs are drawn anew from the study's own budgets."""
    session.setdefault("budget_overrides", {}).pop(study, None)
    generations = session.setdefault("budget_generation", {})
    generations[study] = int(generations.get(study, 0)) + 1


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
    return storage_from_env(None) or f"sqlite:///{workdir() / DB_NAME}"


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


@dataclass(frozen=True)
class StudySummary:
    """What the study picker says about a study: trials so far and when it started."""

    name: str
    trials: int
    started: str  # "YYYY-MM-DD HH:MM" (local time), "" when no trial ran yet


def study_summaries(storage: str) -> list[StudySummary]:
    """The studies in ``storage``, newest first; [] when the SQLite file does not exist yet."""
    if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///") :]).exists():
        return []
    import optuna

    from search.names import check_study_name as check
    from search.storage import make_storage

    summaries = optuna.get_all_study_summaries(make_storage(storage), include_best_trial=False)
    summaries.sort(key=lambda s: getattr(s, "_study_id", 0), reverse=True)
    out = []
    for s in summaries:  # names read back from storage are validated like typed ones; others are not shown
        try:
            name = check(s.study_name)
        except ConfigError:
            continue
        started = s.datetime_start.strftime("%Y-%m-%d %H:%M") if s.datetime_start else ""
        out.append(StudySummary(name, int(s.n_trials), started))
    return out


def list_studies(storage: str) -> list[str]:
    """Names of the studies in ``storage``, newest first; [] when the SQLite file does not exist yet."""
    return [s.name for s in study_summaries(storage)]


def link_params(params: Mapping[str, str]) -> dict[str, Any]:
    """``?study=..&trial=..&page=..`` of a deep link, checked: ``{"study": str, "trial": int, "page": str}``.

    Anything that does not pass the name rule, is not a whole number or names no page is left out
    (a link is user input).
    """
    out: dict[str, Any] = {}
    study = str(params.get("study", "")).strip()
    if study:
        try:
            out["study"] = check_study_name(study)
        except ConfigError:
            pass
    trial = str(params.get("trial", "")).strip()
    if trial.isdigit() and len(trial) < 9:
        out["trial"] = int(trial)
    page = str(params.get("page", "")).strip().lower()
    if page in ("search", "front", "candidate", "export", "trials", "analysis"):
        out["page"] = page
    return out
