"""Import heavy optional stacks only where they are used.

TensorFlow Model Optimization needs Keras 2, so ``TF_USE_LEGACY_KERAS=1`` must be set before
TensorFlow is first imported; :func:`tensorflow` and :func:`keras` guarantee that.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
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


#: Environment variable that caps TensorFlow's thread pools in this process (set per worker by
#: :func:`search.workers.run_search`, or by the user): N workers on N cores each get cores / N threads
#: instead of N processes each sized for the whole machine.
THREADS_ENV = "TINYFRONT_THREADS"
_threads_applied = False


def thread_limit() -> int | None:
    """The threads ``TINYFRONT_THREADS`` gives this process (None when it is not set); TinyfrontError
    when it is not a whole number >= 1."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        return None
    try:
        threads = int(value)
    except ValueError:
        raise TinyfrontError(f"{THREADS_ENV} must be a whole number of threads >= 1, got {value!r}") from None
    if threads < 1:
        raise TinyfrontError(f"{THREADS_ENV} must be a whole number of threads >= 1, got {threads}")
    return threads


def _apply_thread_limit(tf: ModuleType) -> None:
    global _threads_applied
    if _threads_applied or not os.environ.get(THREADS_ENV, "").strip():
        return
    _threads_applied = True
    threads = thread_limit()
    assert threads is not None
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already ran an op in this process: its pools are fixed now
        pass


def tensorflow() -> ModuleType:
    """The ``tensorflow`` module, imported with Keras 2 selected (thread pools capped by ``TINYFRONT_THREADS``)."""
    _prepare_tf_env()
    tf = require("tensorflow")
    _apply_thread_limit(tf)
    return tf


def keras() -> ModuleType:
    """``tf_keras`` (Keras 2), the Keras that tfmot works with."""
    tensorflow()
    return require("tf_keras")


#: The Keras 2 module that tfmot's pruning registry imports (:func:`tfmot`).
_KERAS2_ENGINE = "keras.engine"


def tfmot() -> ModuleType:
    """``tensorflow_model_optimization``, imported without importing Keras 3 (:func:`_keras3_installed`)."""
    tensorflow()
    if "tensorflow_model_optimization" in sys.modules or not _keras3_installed() or "keras" in sys.modules:
        return require("tensorflow_model_optimization")
    # tfmot's pruning registry runs ``from keras.engine import base_layer``, a Keras 2 path. With Keras 3
    # installed that imports all of Keras 3 (and scikit-learn through it), about 1.1 s here, only to
    # fail with ImportError, after which tfmot goes on without it. ``None`` in ``sys.modules`` makes
    # that import fail at once, with the same ImportError; the entry is removed straight after.
    sys.modules.setdefault(_KERAS2_ENGINE, None)  # type: ignore[arg-type]
    try:
        return require("tensorflow_model_optimization")
    finally:
        if sys.modules.get(_KERAS2_ENGINE, 0) is None:
            del sys.modules[_KERAS2_ENGINE]


def _keras3_installed() -> bool:
    """Whether the installed ``keras`` package is Keras 3 or later (which has no ``keras.engine``)."""
    try:
        major = importlib.metadata.version("keras").split(".")[0]
    except importlib.metadata.PackageNotFoundError:
        return False
    return major.isdigit() and int(major) >= 3
