"""One rule for study names and one containment check for every path derived from stored values.

A study name becomes a folder (``<artifacts>/<study>/trial-N``), a run record and a log file name
(``.tinyfront/runs/<study>.json``), so the CLI, the app and the magics all accept the same names,
and every name read back from a storage or a JSON file goes through the same check. Paths built
from such names, or read from storage, go through :func:`contained` before anything is read,
written or shown.

A trial records its folder as an absolute path (``artifacts_dir``); :func:`trial_folder` is how
every reader finds it, also after the project folder was moved or cloned.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from search.errors import CandidateError, ConfigError

#: The artifacts root unless told otherwise: ``tinyfront_artifacts`` in the working folder.
DEFAULT_ARTIFACTS_ROOT = "tinyfront_artifacts"
#: Longest study name (also keeps ``<name>.json`` / ``<name>.log`` well below file-name limits).
MAX_STUDY_NAME = 100
_NAME_RE = re.compile(rf"[A-Za-z0-9._-]{{1,{MAX_STUDY_NAME}}}")


def check_study_name(name: object, *, origin: str = "study name") -> str:
    """``name`` when it is 1-100 characters of ``A-Z a-z 0-9 . _ -`` not starting with '.'; else ConfigError."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or name.startswith("."):
        shown = repr(name) if not isinstance(name, str) or len(name) <= 60 else repr(name[:60] + "...")
        length = f" ({len(name)} characters)" if isinstance(name, str) and len(name) > MAX_STUDY_NAME else ""
        raise ConfigError(
            f"{origin} must be 1-{MAX_STUDY_NAME} characters from A-Z, a-z, 0-9, '.', '_', '-', not starting "
            f"with '.', got {shown}{length}"
        )
    return name


def contained(root: str | Path, path: str | Path, *, what: str = "path") -> Path:
    """``path`` (absolute, or relative to ``root``) resolved, when it stays inside ``root``; else ConfigError.

    Symbolic links are resolved first, so a link that points outside is refused like ``../``.
    A NUL byte, which no file name holds, is refused too.
    """
    text = str(path)
    if "\x00" in text or "\x00" in str(root):
        raise ConfigError(f"{what} must not contain a NUL byte, got {text!r}")
    base = Path(root).expanduser().resolve()
    candidate = Path(text).expanduser()
    resolved = (candidate if candidate.is_absolute() else base / candidate).resolve()
    if not resolved.is_relative_to(base):
        raise ConfigError(f"{what} must stay inside {base}, got {text!r} (resolves to {resolved})")
    return resolved


def trial_folder(recorded: str | Path, study_name: str, *roots: str | Path | None) -> Path:
    """A trial's artifacts folder: ``recorded`` (its ``artifacts_dir``) when it exists, else the folder
    of the same name in ``<root>/<study_name>`` for the first of ``roots`` that has it (the study's
    recorded root, then the working folder's: the project was moved or cloned). CandidateError
    naming every folder looked in when none exists."""
    path = Path(recorded)
    if path.is_dir():
        return path
    looked = [path]
    for root in roots:
        if not root:
            continue
        study_dir = contained(root, check_study_name(study_name), what="study folder")
        moved = contained(study_dir, path.name or ".", what="trial folder")
        if moved.parent == study_dir and moved.is_dir():
            return moved
        if moved not in looked:
            looked.append(moved)
    if len(looked) == 1:
        raise CandidateError(f"artifacts folder {path} does not exist (and there is no artifacts root to look in)")
    others = ", ".join(str(p) for p in looked[1:])
    raise CandidateError(f"artifacts folder {path} does not exist, nor does {others} (the artifacts roots looked in)")


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, in hex, read in 1 MiB blocks (OSError when it cannot be read)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
