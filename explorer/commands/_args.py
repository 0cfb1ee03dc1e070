"""``argparse`` value types shared by every sub-command and the notebook magics (which reuse the
CLI's parsers): numbers must be finite and in range, seeds 32-bit, study names follow
:func:`search.names.check_study_name`. A bad value is refused while parsing, before anything is
loaded, built or stored.

``--storage`` (:func:`add_storage_argument`) left out means ``$TINYFRONT_STORAGE``, else the
command's default; :func:`resolve_storage` fills it in after parsing, so the magics, whose parser
is built once when the extension loads, see the environment of each call.
"""

from __future__ import annotations

import argparse
import math

from search.errors import ConfigError
from search.storage import DEFAULT_STORAGE, STORAGE_ENV, storage_from_env
from search.study import MAX_SEED


def finite_float(text: str) -> float:
    """A finite number (no nan, no inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number >= 0."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    """A whole number >= 0."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def seed(text: str) -> int:
    """A seed: a whole number with 0 <= seed < 2**32."""
    value = _integer(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be from 0 to {MAX_SEED} (2**32 - 1), got {text!r}")
    return value


def study_name(text: str) -> str:
    """A study name (the one rule of :func:`search.names.check_study_name`)."""
    from search.names import check_study_name

    try:
        return check_study_name(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_storage_argument(
    p: argparse.ArgumentParser, *, fallback: str | None = DEFAULT_STORAGE, what: str = "Optuna storage URL"
) -> None:
    """``--storage URL``; left out, :func:`resolve_storage` makes it ``$TINYFRONT_STORAGE``, else
    ``fallback`` (None: one of the two is required)."""
    default = f"${STORAGE_ENV} when set, else {fallback}" if fallback else f"${STORAGE_ENV}; one of the two is required"
    p.add_argument("--storage", metavar="URL", help=f"{what} (default: {default})")
    p.set_defaults(storage=None, storage_fallback=fallback)


def resolve_storage(args: argparse.Namespace) -> None:
    """Fill in the ``--storage`` that ``args`` leaves out (see :func:`add_storage_argument`); a command
    without ``--storage`` is left alone. ConfigError when there is none and the command needs one."""
    if not hasattr(args, "storage_fallback") or args.storage is not None:
        return
    args.storage = storage_from_env(args.storage_fallback)
    if args.storage is None:
        raise ConfigError(f"no storage given: pass --storage URL or set {STORAGE_ENV}")
