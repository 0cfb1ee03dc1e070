"""Import heavy optional stacks only where they are used.

TensorFlow Model Optimization needs Keras 2, so ``TF_USE_LEGACY_KERAS=1`` must be set before
TensorFlow is first imported; :func:`tensorflow` and :func:`keras` guarantee that.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from search.errors import TinyfrontError

_PIP_NAMES = {
    "tensorflow": "tensorflow",
    "tf_keras": "tf-keras",
    "tensorflow_model_optimization": "tensorflow-model-optimization",
    "tflite_micro": "tflite-micro",
    "onnxruntime": "onnxruntime",
    "tf2onnx": "tf2onnx",
    "onnx": "onnx",
}


def require(module: str) -> ModuleType:
    """Import ``module`` or fail with the pip command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        pip_name = _PIP_NAMES.get(top, top)
        raise TinyfrontError(f"{module} is not installed ({exc}); install it with: pip install {pip_name}") from None


def _prepare_tf_env() -> None:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def tensorflow() -> ModuleType:
    """The ``tensorflow`` module, imported with Keras 2 selected."""
    _prepare_tf_env()
    return require("tensorflow")


def keras() -> ModuleType:
    """``tf_keras`` (Keras 2), the Keras that tfmot works with."""
    _prepare_tf_env()
    return require("tf_keras")


def tfmot() -> ModuleType:
    """``tensorflow_model_optimization``."""
    _prepare_tf_env()
    return require("tensorflow_model_optimization")
