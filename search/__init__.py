"""tinyfront's engine: targets, data, candidate factory, measurement and the Optuna study.

Importing this package does not import TensorFlow, tflite-micro, ONNX Runtime or Optuna; they load
when a function that needs them runs.
"""

from search.candidate import check_deployable, evaluate_candidate, load_result, remeasure, supported_precisions
from search.data import Dataset, from_arrays, load_dataset, load_demo
from search.errors import (
    CandidateError,
    ConfigError,
    DataError,
    ExportError,
    MeasurementError,
    TinyfrontError,
)
from search.figures import Figure
from search.front import FrontReport, load_front, recheck
from search.pareto import hypervolume, knee_point, pareto_mask
from search.result import OBJECTIVES, PRECISIONS, CandidateResult, CandidateSpec
from search.space import SearchSpace
from search.study import StudyConfig, create_or_load_study
from search.targets import Target, get_target, load_targets
from search.workers import run_search

__version__ = "0.1.0"

__all__ = [
    "OBJECTIVES",
    "PRECISIONS",
    "CandidateError",
    "CandidateResult",
    "CandidateSpec",
    "ConfigError",
    "DataError",
    "Dataset",
    "ExportError",
    "Figure",
    "FrontReport",
    "MeasurementError",
    "SearchSpace",
    "StudyConfig",
    "Target",
    "TinyfrontError",
    "__version__",
    "check_deployable",
    "create_or_load_study",
    "evaluate_candidate",
    "from_arrays",
    "get_target",
    "hypervolume",
    "knee_point",
    "load_dataset",
    "load_demo",
    "load_front",
    "load_result",
    "load_targets",
    "pareto_mask",
    "recheck",
    "remeasure",
    "run_search",
    "supported_precisions",
]
