"""The candidate factory: build, compress, convert and measure one candidate for real.

One candidate = (target, family, width, sparsity, precision). :func:`evaluate_candidate` trains
the base model (or reuses it), prunes it with tfmot, optionally fine-tunes it quantisation-aware,
converts it for the target's runtime, runs the artifact in that runtime and writes everything
into an artifacts folder:

* ``model.tflite`` (TFLite Micro / LiteRT targets) or ``model.onnx`` (ONNX Runtime targets)
* ``result.json``: :meth:`CandidateResult.to_dict`
* ``val_samples.npz``: ``x`` (up to 32 real validation inputs, float32) and ``y`` (labels)
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from search import _lazy
from search.deployed import deployed_accuracy, measure_deployment
from search.early_stop import CandidateStopped, Monitor
from search.errors import CandidateError, ConfigError
from search.figures import Figure
from search.result import PRECISIONS, CandidateResult, CandidateSpec
from search.targets import Target

if TYPE_CHECKING:
    import tf_keras

    from search.data import Dataset

__all__ = ["check_deployable", "check_device_kernels", "evaluate_candidate", "remeasure", "supported_precisions"]

_RUNTIME_PRECISIONS: dict[str, tuple[str, ...]] = {
    "tflm": ("float32", "int8", "int8_qat", "int16x8"),
    "litert": PRECISIONS,
    "onnxruntime": PRECISIONS,
}
_REFUSALS = {
    ("tflm", "float16"): "TFLite Micro has no float16 kernels (float16 weights need a DEQUANTIZE to float32 that "
    "TFLM does not run); use int8 or float32"
}
#: (kernel library, precision, family) combinations known not to run on the device's kernels, with the
#: reason: refused before any training. Every built-in family converts at every TFLM precision into a
#: model CMSIS-NN accepts (int16x8 with per-tensor dense weights, see search/convert.py), checked by
#: tests/test_kernels.py; a user builder's ops are only known after conversion, where
#: search.kernels.device_kernel_problems turns a refused model into a failed candidate.
_KERNEL_REFUSALS: dict[tuple[str, str, str], str] = {}
VAL_SAMPLES = 32


def supported_precisions(target: Target) -> tuple[str, ...]:
    """The precisions the target's runtime can run."""
    return _RUNTIME_PRECISIONS[target.runtime]


def check_deployable(spec: CandidateSpec, target: Target) -> None:
    """Refuse, before any training, a candidate the target cannot run or that makes no sense."""
    from search.families import FAMILIES

    if spec.precision not in PRECISIONS:
        raise CandidateError(f"unknown precision '{spec.precision}'; expected one of: {', '.join(PRECISIONS)}")
    if spec.precision not in supported_precisions(target):
        reason = _REFUSALS.get((target.runtime, spec.precision), f"{target.runtime} cannot run {spec.precision}")
        raise CandidateError(f"precision {spec.precision} cannot run on {target.name}: {reason}")
    if spec.family not in FAMILIES and ":" not in spec.family:
        raise ConfigError(
            f"unknown model family '{spec.family}'; expected one of {', '.join(FAMILIES)} or 'module:function'"
        )
    if not 0 < spec.width <= 2:
        raise ConfigError(f"width must be in (0, 2], got {spec.width:g}")
    if not 0 <= spec.sparsity < 1:
        raise ConfigError(f"sparsity must be in [0, 1), got {spec.sparsity:g}")
    if spec.depth is not None and spec.depth < 1:
        raise ConfigError(f"depth must be >= 1 block, got {spec.depth}")
    if spec.resolution is not None and spec.resolution < 4:
        raise ConfigError(f"resolution must be >= 4 pixels, got {spec.resolution}")
    for name in ("epochs", "batch_size"):
        if getattr(spec, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(spec, name)}")
    if target.runtime == "tflm":
        from search.kernels import kernel_set

        kernels = kernel_set(target.core).name
        refusal = _KERNEL_REFUSALS.get((kernels, spec.precision, spec.family))
        if refusal is not None:
            raise CandidateError(
                f"{spec.family} at {spec.precision} cannot run on {target.name}'s {kernels} kernels: {refusal}"
            )


def check_device_kernels(model: bytes, target: Target) -> None:
    """Refuse a converted .tflite that the kernels of ``target``'s core cannot run (CandidateError)."""
    from search.kernels import device_kernel_problems, kernel_set

    if target.runtime != "tflm":
        return
    problems = device_kernel_problems(model, target.core)
    if problems:
        kernels = kernel_set(target.core).name
        raise CandidateError(
            f"the converted model cannot run on {target.name} ({target.core}, {kernels} kernels): "
            + "; ".join(problems)
        )


@contextmanager
def _stage(seconds: dict[str, float], name: str, progress: Callable[[str], None] | None) -> Iterator[None]:
    if progress is not None:
        progress(name)
    start = time.perf_counter()
    yield
    seconds[name] = round(seconds.get(name, 0.0) + time.perf_counter() - start, 3)


def _resize(x: np.ndarray, resolution: int | None) -> np.ndarray:
    if resolution is None or x.shape[1:3] == (resolution, resolution):
        return x
    tf = _lazy.tensorflow()
    return np.asarray(tf.image.resize(x, (resolution, resolution)).numpy(), dtype=np.float32)


def keras_layers(model: tf_keras.Model) -> tuple[int, list[dict[str, Any]]]:
    """MACs and a per-layer table (conv, depthwise and dense layers) of a Keras model."""
    keras = _lazy.keras()
    total, rows = 0, []
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)  # unwrap tfmot wrappers
        out = layer.output_shape if isinstance(layer.output_shape, tuple) else layer.output_shape[0]
        if isinstance(inner, keras.layers.DepthwiseConv2D):
            kh, kw = inner.kernel_size
            macs = int(np.prod(out[1:])) * kh * kw
        elif isinstance(inner, keras.layers.Conv2D):
            kh, kw = inner.kernel_size
            macs = int(np.prod(out[1:])) * kh * kw * int(layer.input_shape[-1])
        elif isinstance(inner, keras.layers.Dense):
            macs = int(layer.input_shape[-1]) * int(out[-1])
        else:
            continue
        total += macs
        rows.append(
            {"name": layer.name, "op": type(inner).__name__, "macs": macs, "weight_params": layer.count_params()}
        )
    return total, rows


def _kernel_zero_fractions(model: tf_keras.Model) -> tuple[float, float]:
    """Fraction of exact zeros among all conv/dense kernels, and among the kernels tfmot prunes
    (its magnitude pruning leaves depthwise kernels dense)."""
    zeros = count = pruned_zeros = pruned_count = 0
    for w in model.weights:
        name = w.name.lower()
        if "kernel" not in name or "quantize" in name:
            continue
        arr = np.asarray(w.numpy())
        n_zero = int(np.sum(arr == 0))
        zeros, count = zeros + n_zero, count + arr.size
        if "depthwise" not in name:
            pruned_zeros, pruned_count = pruned_zeros + n_zero, pruned_count + arr.size
    return (zeros / count if count else 0.0), (pruned_zeros / pruned_count if pruned_count else 0.0)


def _sparsity_truth(model_bytes: bytes, fractions: tuple[float, float], target: Target) -> dict[str, Any]:
    stored = len(model_bytes)
    return {
        "zero_weight_fraction": round(fractions[0], 4),
        "pruned_layers_zero_fraction": round(fractions[1], 4),
        "stored_bytes": stored,
        "gzip_bytes": len(gzip.compress(model_bytes, compresslevel=9)),
        "flash_saved_bytes": 0,
        "note": (
            f"{target.runtime} stores weights densely: zeros cost as much flash as any other value, so "
            "unstructured sparsity saves no flash on the board; only the compressed (gzip) size shrinks. "
            "Pruning applies to conv and dense kernels; depthwise kernels stay dense."
        ),
    }


def evaluate_candidate(
    spec: CandidateSpec,
    target: Target,
    dataset: Dataset,
    out_dir: Path,
    *,
    cache_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    monitor: Monitor | None = None,
) -> CandidateResult:
    """Build, compress, convert and measure one candidate; write its artifacts into ``out_dir``.

    With a ``monitor`` (:mod:`search.early_stop`) a quantisation-aware fine-tune is checked after every
    epoch but the last, and :class:`~search.early_stop.CandidateStopped` is raised when its rule stops
    the candidate (before any training when its sibling is over budget).
    """
    from search import __version__, training
    from search.convert import to_onnx, to_tflite

    check_deployable(spec, target)
    monitor = monitor if monitor is not None else Monitor()
    if monitor.rule is not None and (reason := monitor.rule.before_training()):
        raise CandidateStopped(reason, {}, [])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    settings = training.TrainSettings(spec.epochs, spec.finetune_epochs, spec.batch_size, spec.learning_rate, spec.seed)
    x_train = _resize(dataset.x_train, spec.resolution)
    x_val = _resize(dataset.x_val, spec.resolution)
    x_rep = _resize(dataset.x_rep, spec.resolution)
    key = training.base_key(dataset.fingerprint, spec.family, spec.width, x_train.shape[1:], settings, spec.depth)

    with _stage(seconds, "train", progress):
        base, reused = training.train_base(
            spec.family,
            spec.width,
            x_train,
            dataset.y_train,
            dataset.num_classes,
            settings,
            cache_dir=cache_dir,
            key=key,
            depth=spec.depth,
        )
    qat = spec.precision == "int8_qat"
    fine_tune = max(1, spec.finetune_epochs)
    with _stage(seconds, "prune", progress):
        # A dense candidate converts the base model itself (kept in memory for the width's next
        # candidates): nothing below changes its weights or state; the Keras accuracy, the layer
        # table and the conversion only read it. Pruning and quantisation-aware training get this
        # process's work copy of the base, its weights set from the base (not a new clone).
        model = base if spec.sparsity <= 0 and not qat else training.work_copy(base)
        pruned_key = (
            training.pruned_key(training.weights_digest(base), settings, x_train.shape, spec.sparsity)
            if spec.sparsity > 0
            else None
        )
        reused_pruning = training.load_pruned(model, pruned_key, cache_dir=cache_dir)
        if not reused_pruning:
            check = None if qat else monitor.callback("pruning fine-tune", fine_tune, x_val, dataset.y_val)
            model = training.prune(
                model, spec.sparsity, x_train, dataset.y_train, settings, key=key, callbacks=_some(check)
            )
    _stop_if_told(monitor, seconds)
    if not reused_pruning:
        training.keep_pruned(model, pruned_key, cache_dir=cache_dir)
    zero_fractions = _kernel_zero_fractions(model)
    if qat:
        with _stage(seconds, "qat", progress):
            check = monitor.callback("quantisation-aware fine-tune", fine_tune, x_val, dataset.y_val)
            model = training.quantize_aware(
                model, x_train, dataset.y_train, settings, keep_sparsity=spec.sparsity > 0, callbacks=_some(check)
            )
        _stop_if_told(monitor, seconds)
    keras_acc = training.keras_accuracy(model, x_val, dataset.y_val)
    macs, layers = keras_layers(model)

    with _stage(seconds, "convert", progress):
        if target.runtime == "onnxruntime":
            artifact = out_dir / "model.onnx"
            to_onnx(model, spec.precision, x_rep, artifact)
        else:
            artifact = out_dir / "model.tflite"
            tflite = to_tflite(model, spec.precision, x_rep)
            check_device_kernels(tflite, target)
            artifact.write_bytes(tflite)
    np.savez(out_dir / "val_samples.npz", x=x_val[:VAL_SAMPLES].astype(np.float32), y=dataset.y_val[:VAL_SAMPLES])

    with _stage(seconds, "measure", progress):
        deployment = measure_deployment(out_dir, target, x_val[0])
        figures = dict(deployment.figures)
        figures["accuracy"] = deployed_accuracy(out_dir, target, x_val, dataset.y_val)
    figures["keras_accuracy"] = Figure(
        keras_acc, "fraction", "measured", f"Keras model before conversion on {len(x_val)} validation samples"
    )
    dataset_info = {**dataset.describe(), "input_shape": list(x_train.shape[1:])}
    result = CandidateResult(
        spec=spec,
        target=target,
        dataset=dataset_info,
        figures=figures,
        macs=macs,
        params=int(model.count_params()),
        ops=deployment.ops,
        sparsity=_sparsity_truth(artifact.read_bytes(), zero_fractions, target),
        layers=deployment.layers or layers,
        stage_seconds=seconds,
        reused_base=reused,
        reused_pruning=reused_pruning,
        artifacts_dir=str(out_dir.resolve()),
        tinyfront_version=__version__,
        checkpoints=monitor.checkpoints,
    )
    (out_dir / "result.json").write_text(json.dumps(result.to_dict(), indent=2))
    return result


def _some(callback: Any) -> tuple[Any, ...]:
    return () if callback is None else (callback,)


def _stop_if_told(monitor: Monitor, seconds: dict[str, float]) -> None:
    if monitor.reason is not None:
        raise CandidateStopped(monitor.reason, dict(seconds), list(monitor.checkpoints))


def load_result(artifacts_dir: Path) -> CandidateResult:
    """The stored result of a candidate's artifacts folder."""
    path = Path(artifacts_dir) / "result.json"
    try:
        return CandidateResult.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise CandidateError(f"no result.json in {artifacts_dir}: not a finished candidate") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CandidateError(f"{path} is unreadable: {exc}") from None


def remeasure(artifacts_dir: Path, target: Target) -> CandidateResult:
    """Re-derive flash, SRAM, latency and verdicts of stored artifacts for another target.

    No retraining: the stored artifact is measured for ``target``. The stored accuracy is kept:
    TFLM and LiteRT targets run the same ``.tflite``, ONNX Runtime targets the ``.onnx``; a target
    whose runtime needs an artifact the study did not produce is refused with the reason.
    """
    stored = load_result(artifacts_dir)
    check_deployable(stored.spec, target)
    tflite = Path(artifacts_dir) / "model.tflite"
    if target.runtime == "tflm" and tflite.is_file():
        check_device_kernels(tflite.read_bytes(), target)
    samples = np.load(Path(artifacts_dir) / "val_samples.npz")
    deployment = measure_deployment(Path(artifacts_dir), target, samples["x"][0])
    figures = dict(deployment.figures)
    for key in ("accuracy", "keras_accuracy"):
        figures[key] = stored.figures[key]
    return CandidateResult(
        spec=stored.spec,
        target=target,
        dataset=stored.dataset,
        figures=figures,
        macs=stored.macs,
        params=stored.params,
        ops=deployment.ops or stored.ops,
        sparsity=stored.sparsity,
        layers=deployment.layers or stored.layers,
        stage_seconds=stored.stage_seconds,
        reused_base=stored.reused_base,
        reused_pruning=stored.reused_pruning,
        artifacts_dir=stored.artifacts_dir,
        tinyfront_version=stored.tinyfront_version,
        checkpoints=stored.checkpoints,
    )
