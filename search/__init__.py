"""tinyfront's engine: targets, data, candidate factory, measurement and the Optuna study.

Importing this package does not import TensorFlow.
"""

from search.errors import (
    CandidateError,
    ConfigError,
    DataError,
    ExportError,
    MeasurementError,
    TinyfrontError,
)
from search.figures import Figure
from search.targets import Target, get_target, load_targets

__version__ = "0.1.0"

__all__ = [
    "CandidateError",
    "ConfigError",
    "DataError",
    "ExportError",
    "Figure",
    "MeasurementError",
    "Target",
    "TinyfrontError",
    "__version__",
    "get_target",
    "load_targets",
]
