"""Choose the TFLite Micro bundle's test input and compute its expected output with the real interpreter.

Quantisation follows TFLite's reference Quantize kernel and ``main.cc``: ``x / scale`` in float32,
rounded half away from zero (``std::round``), plus the zero point, clamped to the type's range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from search.errors import ExportError, MeasurementError
from search.tflite_graph import TensorInfo

#: Seed of the synthetic input used when no validation samples come with the model.
SYNTHETIC_SEED = 0

_INT_TYPES = ("int8", "uint8", "int16")


@dataclass(frozen=True)
class TestInput:
    """The float input, its quantised bytes, the label and the host's raw output."""

    x: np.ndarray  # float32, the model's input shape
    x_raw: np.ndarray  # in the input tensor's dtype
    expected_class: int  # -1 when unknown
    host_output_raw: np.ndarray  # output tensor 0 as TFLM returned it
    host_top_class: int
    source: str
    index: int | None


def quantize(x: np.ndarray, spec: TensorInfo) -> np.ndarray:
    """``x`` in the dtype of ``spec`` (see the module docstring); float inputs pass through."""
    x = np.asarray(x, dtype=np.float32)
    if spec.dtype == "float32":
        return x.copy()
    if spec.dtype not in _INT_TYPES or spec.scale is None:
        raise ExportError(f"input tensor type {spec.dtype} is not supported: expected float32, int8, uint8 or int16")
    v = (x / np.float32(spec.scale)).astype(np.float64)
    rounded = np.where(v >= 0, np.floor(v + 0.5), np.ceil(v - 0.5))
    info = np.iinfo(spec.dtype)
    return np.clip(rounded + (spec.zero_point or 0), info.min, info.max).astype(spec.dtype)


def dequantize(raw: np.ndarray, spec: TensorInfo) -> np.ndarray:
    if spec.dtype == "float32" or spec.scale is None:
        return np.asarray(raw, dtype=np.float32)
    return (np.asarray(raw, dtype=np.float32) - np.float32(spec.zero_point or 0)) * np.float32(spec.scale)


def _synthetic(spec: TensorInfo) -> np.ndarray:
    """Seeded uniform noise over the input's representable range (float inputs: [0, 1])."""
    rng = np.random.default_rng(SYNTHETIC_SEED)
    if spec.dtype in _INT_TYPES and spec.scale is not None:
        info = np.iinfo(spec.dtype)
        lo = (info.min - (spec.zero_point or 0)) * spec.scale
        hi = (info.max - (spec.zero_point or 0)) * spec.scale
    else:
        lo, hi = 0.0, 1.0
    return rng.uniform(lo, hi, size=spec.shape).astype(np.float32)


def choose_test_input(
    model: bytes,
    spec_in: TensorInfo,
    spec_out: TensorInfo,
    arena_size: int,
    x_val: np.ndarray | None,
    y_val: np.ndarray | None,
    samples_name: str,
) -> TestInput:
    """The first validation sample the host TFLM classifies correctly (else sample 0), or seeded noise.

    Runs TFLite Micro with ``arena_size`` bytes, so a success also proves the arena is large enough.
    """
    shape = tuple(spec_in.shape)
    candidates: list[tuple[np.ndarray, int, int | None]] = []
    if x_val is not None:
        per_sample = int(np.prod(shape[1:])) if len(shape) > 1 else int(np.prod(shape))
        if int(np.prod(x_val.shape[1:])) != per_sample:
            raise ExportError(
                f"validation samples in {samples_name} have shape {tuple(x_val.shape[1:])}, "
                f"but the model's input is {shape}"
            )
        labels = y_val if y_val is not None else np.full(len(x_val), -1)
        candidates = [(x_val[i].reshape(shape), int(labels[i]), i) for i in range(len(x_val))]
    first: TestInput | None = None
    for x, label, index in candidates:
        result = _run(model, x, spec_in, spec_out, arena_size, label, index, samples_name)
        if first is None:
            first = result
        if label < 0 or result.host_top_class == label:
            return result
    if first is not None:
        return first
    x = _synthetic(spec_in).reshape(shape)
    source = f"synthetic input: seeded uniform noise (numpy default_rng({SYNTHETIC_SEED})), no validation samples given"
    return _run(model, x, spec_in, spec_out, arena_size, -1, None, source)


def _run(
    model: bytes,
    x: np.ndarray,
    spec_in: TensorInfo,
    spec_out: TensorInfo,
    arena_size: int,
    label: int,
    index: int | None,
    source: str,
) -> TestInput:
    from search.tflm import run_tflm_raw

    x_raw = quantize(x, spec_in)
    try:
        out = np.asarray(run_tflm_raw(model, x_raw, arena_size=arena_size))
    except MeasurementError as exc:
        raise ExportError(f"TFLite Micro could not run the model with a {arena_size} B arena: {exc}") from None
    scores = dequantize(out, spec_out).reshape(-1)
    where = f"validation sample {index} of {source}" if index is not None else source
    return TestInput(x.astype(np.float32), x_raw, label, out, int(np.argmax(scores)), where, index)
