"""Run models in the real TFLite Micro interpreter (the ``tflite-micro`` package) on this host.

:func:`measure_arena` bisects the smallest tensor arena with which TFLM's ``AllocateTensors``
succeeds and reads the RecordingMicroAllocator breakdown that ``print_allocations()`` writes to
file descriptor 2 (stderr: the DESIGN note's "fd 1" is wrong for this build; TFLM's DebugLog
calls ``vfprintf(stderr, ...)``). The host is x86-64 with TFLM's reference kernels; ``arena_bytes_32bit``
rescales the pointer-bearing persistent records to a 32-bit MCU (see :data:`POINTER_RECORD_BYTES`).
Kernel scratch buffers that CMSIS-NN requests on a Cortex-M are not in this figure (the host
runs reference kernels); :mod:`search.measure` adds an estimate of them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from search._lazy import require
from search.errors import MeasurementError

#: Arenas below this are never handed to TFLM: the host build places its allocator objects in the
#: arena unchecked and segfaults on arenas of a few hundred bytes (seen below ~500 B).
MIN_ARENA_BYTES = 1024

#: Arena tried first; a model that does not allocate in it is reported as unmeasurable.
HUGE_ARENA_BYTES = 64 * 1024 * 1024

#: Size of the persistent records TFLM places in the arena tail, per record, on x86-64 (as the
#: breakdown reports them: bytes / count) and on a 32-bit MCU. Derived from the structs in
#: tensorflow/lite/core/c/common.h (TF_LITE_STATIC_MEMORY build) and micro_allocator.h:
#: TfLiteEvalTensor {data*, dims*, type} 24 -> 12; NodeAndRegistration {TfLiteNode: 6 pointers +
#: int, registration*} 64 -> 32; TfLiteTensor {data*, dims*, params(8), quantization{type, *},
#: bytes(size_t), type, allocation_type, is_variable} 64 -> 40; quantization data per tensor
#: {TfLiteAffineQuantization: scale*, zero_point*, int} 24 -> 12 plus an 8-byte zero-point
#: TfLiteIntArray, i.e. 32 -> 20 per tensor (two allocations). ``Persistent buffer data`` (kernel
#: op data: mostly int32 per-channel multipliers and shifts) is kept as is. The unlisted remainder
#: of the tail (subgraph arrays, allocator and planner objects: pointer-dominated) is halved.
POINTER_RECORD_BYTES: dict[str, tuple[float, float]] = {
    "TfLiteEvalTensor data": (24, 12),
    "NodeAndRegistration struct": (64, 32),
    "Persistent TfLiteTensor data": (64, 40),
    "Persistent TfLiteTensor quantization data": (32, 20),
}

_TOTAL = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
_RECORD = re.compile(r"'([^']+)' used (\d+) bytes")


@dataclass(frozen=True)
class ArenaMeasurement:
    """Smallest TFLM arena found here, its 32-bit MCU equivalent and the allocator breakdown (bytes)."""

    arena_bytes: int
    arena_bytes_32bit: int
    breakdown: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _runtime() -> Any:
    return require("tflite_micro.python.tflite_micro.runtime")


@contextlib.contextmanager
def _capture_fd2() -> Iterator[list[str]]:
    """Redirect the process's file descriptor 2 (where TFLM's DebugLog writes) into a list of one string."""
    libc = ctypes.CDLL(None)
    out: list[str] = []
    sys.stderr.flush()
    libc.fflush(None)
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            libc.fflush(None)
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode(errors="replace"))


def _try_allocate(model: bytes, arena_size: int) -> tuple[Any | None, str]:
    """An interpreter if ``arena_size`` bytes suffice, else None and TFLM's printed reason."""
    if arena_size < MIN_ARENA_BYTES:
        return None, f"arena below {MIN_ARENA_BYTES:,} B is not tried (TFLM's allocator objects do not fit)"
    runtime = _runtime()
    with _capture_fd2() as printed:
        try:
            interpreter = runtime.Interpreter.from_bytes(model, arena_size=int(arena_size))
            # The C++ interpreter reads the flatbuffer in place: keep the bytes alive as long as it lives.
            interpreter._tinyfront_model = model
            return interpreter, ""
        except Exception as exc:  # the wrapper raises RuntimeError; corrupt files raise struct.error etc.
            error = str(exc).split("[RecordingMicroAllocator]")[0].strip()
    reason = " ".join(line.strip() for line in printed[0].splitlines() if "RecordingMicroAllocator" not in line)
    return None, "; ".join(s for s in (error, reason.strip()) if s)


def _breakdown(interpreter: Any) -> dict[str, int]:
    with _capture_fd2() as printed:
        interpreter.print_allocations()
    text = printed[0]
    result = {m.group(1): int(m.group(2)) for m in _TOTAL.finditer(text)}
    result.update({m.group(1): int(m.group(2)) for m in _RECORD.finditer(text)})
    return result


def _to_32bit(arena_bytes: int, breakdown: dict[str, int]) -> int:
    saving = 0.0
    listed = 0
    for name, used in breakdown.items():
        if name in ("total", "head", "tail"):
            continue
        listed += used
        if name in POINTER_RECORD_BYTES:
            host, mcu = POINTER_RECORD_BYTES[name]
            saving += used * (1 - mcu / host)
    other = max(0, breakdown.get("tail", 0) - listed)
    saving += other / 2
    return int(arena_bytes - round(saving))


def measure_arena(model: bytes, *, resolution: int = 16) -> ArenaMeasurement:
    """Bisect the smallest arena (to ``resolution`` bytes) that TFLM allocates this model in."""
    if resolution < 1:
        raise MeasurementError(f"resolution must be >= 1 byte, got {resolution}")
    from search.tflite_graph import parse_tflite

    model = bytes(model)
    parse_tflite(model)  # MeasurementError on bytes that are not a TFLite flatbuffer
    interpreter, reason = _try_allocate(model, HUGE_ARENA_BYTES)
    if interpreter is None:
        raise MeasurementError(
            f"TFLite Micro cannot allocate this model even with a {HUGE_ARENA_BYTES // 2**20} MiB arena: "
            f"{reason or 'no reason given'}"
        )
    breakdown = _breakdown(interpreter)
    del interpreter
    # The recorded total is where the search starts; bisection then finds the real minimum, which
    # can exceed the total for tiny models: the memory planner's temporary buffers (freed after
    # planning) must fit too (AD01: total 3,984 B, smallest arena that allocates 4,634 B).
    # No arena below the recorded total can allocate (it is what the allocator placed), and probing
    # below it is unsafe: the host build segfaults on some such arenas (seen at total - 206 B).
    # So the search runs between the total (known to fail or to be the answer) and upwards.
    total = breakdown.get("total", HUGE_ARENA_BYTES)
    if _try_allocate(model, total)[0] is not None:
        return ArenaMeasurement(arena_bytes=total, arena_bytes_32bit=_to_32bit(total, breakdown), breakdown=breakdown)
    lo, hi = total, total
    while _try_allocate(model, hi)[0] is None:
        lo, hi = hi, min(HUGE_ARENA_BYTES, hi + max(resolution, hi // 16))
    while hi - lo > resolution:
        mid = (lo + hi) // 2
        if _try_allocate(model, mid)[0] is None:
            lo = mid
        else:
            hi = mid
    return ArenaMeasurement(arena_bytes=hi, arena_bytes_32bit=_to_32bit(hi, breakdown), breakdown=breakdown)


def _interpreter(model: bytes, arena_size: int | None) -> Any:
    from search.tflite_graph import parse_tflite

    parse_tflite(model)
    size = arena_size if arena_size is not None else HUGE_ARENA_BYTES
    interpreter, reason = _try_allocate(bytes(model), size)
    if interpreter is None:
        raise MeasurementError(f"TFLite Micro cannot allocate this model in a {size:,} B arena: {reason}")
    return interpreter


def quantize_input(model: bytes, x: np.ndarray) -> np.ndarray:
    """Convert float ``x`` to the model input's dtype with its scale and zero point (floats pass through)."""
    from search.tflite_graph import parse_tflite

    spec = parse_tflite(model).inputs[0]
    x = np.asarray(x, dtype=np.float32)
    if spec.dtype in ("float32", "float16"):
        return x.astype(spec.dtype)
    if spec.scale is None or spec.dtype not in ("int8", "uint8", "int16"):
        raise MeasurementError(f"cannot quantise input: expected a quantised int8/uint8/int16 input, found {spec}")
    info = np.iinfo(spec.dtype)
    q = np.round(x / spec.scale) + (spec.zero_point or 0)
    return np.clip(q, info.min, info.max).astype(spec.dtype)


def _check_sample_shape(model_shape: tuple[int, ...], sample_shape: tuple[int, ...]) -> None:
    if tuple(model_shape[1:]) != tuple(sample_shape):
        raise MeasurementError(
            f"input shape mismatch: expected samples of shape {tuple(model_shape[1:])}, found {tuple(sample_shape)}"
        )


def run_tflm_raw(model: bytes, x_raw: np.ndarray, *, arena_size: int | None = None) -> np.ndarray:
    """Invoke TFLM once on one sample already in the input dtype; return the raw output tensor."""
    interpreter = _interpreter(model, arena_size)
    details = interpreter.get_input_details(0)
    shape = tuple(int(d) for d in details["shape"])
    x_raw = np.asarray(x_raw)
    if x_raw.shape != shape:
        _check_sample_shape(shape, x_raw.shape)
        x_raw = x_raw.reshape(shape)
    interpreter.set_input(x_raw.astype(details["dtype"], copy=False), 0)
    interpreter.invoke()
    return np.array(interpreter.get_output(0))


def run_tflm(model: bytes, x: np.ndarray, *, arena_size: int | None = None) -> np.ndarray:
    """Float batch ``(N, ...)`` in, float32 outputs ``(N, ...)`` out; one TFLM invoke per sample."""
    interpreter = _interpreter(model, arena_size)
    in_d = interpreter.get_input_details(0)
    out_d = interpreter.get_output_details(0)
    shape = tuple(int(d) for d in in_d["shape"])
    x = np.asarray(x, dtype=np.float32)
    _check_sample_shape(shape, x.shape[1:])
    raw = quantize_input(model, x)
    out_scale = out_d["quantization_parameters"]["scales"]
    out_zp = out_d["quantization_parameters"]["zero_points"]
    results = []
    for sample in raw:
        interpreter.set_input(sample.reshape(shape).astype(in_d["dtype"], copy=False), 0)
        interpreter.invoke()
        y = np.array(interpreter.get_output(0))
        if np.issubdtype(y.dtype, np.integer) and len(out_scale):
            y = (y.astype(np.float32) - float(out_zp[0])) * float(out_scale[0])
        results.append(y.astype(np.float32).reshape(-1))
    return np.stack(results) if results else np.zeros((0,), dtype=np.float32)
