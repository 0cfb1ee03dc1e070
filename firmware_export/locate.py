"""Find a trial's artifacts folder in an Optuna storage.

A finished trial records its folder in the user attribute ``artifacts_dir`` (an absolute path,
found again under the study's ``artifacts_root``, or the working folder's, when the project moved:
:func:`search.names.trial_folder`);
failed trials may record why in ``fail_reason``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from search._lazy import require
from search.errors import ExportError, TinyfrontError
from search.names import DEFAULT_ARTIFACTS_ROOT, trial_folder
from search.storage import display_error, display_url


def trial_artifacts(storage: str, study: str, trial: int) -> Path:
    """The artifacts folder of trial number ``trial`` of ``study`` in ``storage``, or ExportError."""
    optuna = require("optuna")
    logging.getLogger("optuna").setLevel(logging.WARNING)
    try:
        summaries = optuna.study.get_all_study_summaries(storage=storage, include_best_trial=False)
    except Exception as exc:  # bad URL, unreachable server, not an Optuna database
        raise ExportError(
            f"cannot open the Optuna storage {display_url(storage)}: "
            f"{type(exc).__name__}: {display_error(exc, storage)}"
        ) from None
    names = sorted(s.study_name for s in summaries)
    if study not in names:
        known = ", ".join(names) if names else "none"
        raise ExportError(f"no study '{study}' in {display_url(storage)}; studies there: {known}")
    loaded = optuna.load_study(study_name=study, storage=storage)
    found = [t for t in loaded.get_trials(deepcopy=False) if t.number == trial]
    if not found:
        count = len(loaded.get_trials(deepcopy=False))
        numbered = f"its trials are numbered 0 to {count - 1}" if count else "it has no trials yet"
        raise ExportError(f"study '{study}' has no trial {trial}; {numbered}")
    t = found[0]
    if t.state != optuna.trial.TrialState.COMPLETE:
        reason = t.user_attrs.get("fail_reason") or t.user_attrs.get("stop_reason")
        why = f": {reason}" if reason else ""
        raise ExportError(
            f"trial {trial} of study '{study}' is {t.state.name}, not COMPLETE{why}; it has nothing to export"
        )
    folder = t.user_attrs.get("artifacts_dir")
    if not folder:
        raise ExportError(f"trial {trial} of study '{study}' records no artifacts_dir, so it has nothing to export")
    try:
        return trial_folder(folder, study, loaded.user_attrs.get("artifacts_root"), DEFAULT_ARTIFACTS_ROOT)
    except TinyfrontError as exc:
        raise ExportError(f"trial {trial} of study '{study}': {exc}") from None
