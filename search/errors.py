"""The one exception hierarchy of tinyfront.

Library code raises these; each boundary translates them (CLI: one line and exit 1,
IPython magic: ``UsageError``, Streamlit page: ``st.error``).
"""

from __future__ import annotations

import argparse
from typing import NoReturn


class TinyfrontError(Exception):
    """Base class of every error tinyfront raises for bad input or failed work."""


class ConfigError(TinyfrontError):
    """A targets file, a search space or an option is invalid."""


class DataError(TinyfrontError):
    """A dataset has the wrong shape, type, labels or size."""


class CandidateError(TinyfrontError):
    """A candidate cannot be built, converted or deployed on its target."""


class MeasurementError(TinyfrontError):
    """A model could not be measured (unreadable .tflite, arena too large, ...)."""


class ExportError(TinyfrontError):
    """A bundle cannot be exported for the requested trial or format."""


class StorageError(TinyfrontError):
    """The Optuna storage failed (locked too long, overwritten, unreachable): not a candidate's fault."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose error is one line on stderr and exit status 1, as every other error
    of a command line here (not argparse's usage block and exit 2). The ``tinyfront`` CLI and every
    sub-command's parser (``add_subparsers`` makes them of the same class) use it, and so does
    ``python -m search.flash_calibrate``."""

    def error(self, message: str) -> NoReturn:
        self.exit(1, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")
