"""Run models in the real TFLite Micro interpreter (the ``tflite-micro`` package) on this host.

:func:`measure_arena` bisects the smallest tensor arena with which TFLM's ``AllocateTensors``
succeeds and reads the RecordingMicroAllocator breakdown that ``print_allocations()`` writes to
file descriptor 2 (stderr: the DESIGN note's "fd 1" is wrong for this build; TFLM's DebugLog
calls ``vfprintf(stderr, ...)``). The host is x86-64 with TFLM's reference kernels; ``arena_bytes_32bit``
rescales the pointer-bearing persistent records to a 32-bit MCU (see :data:`POINTER_RECORD_BYTES`).
Kernel scratch buffers that CMSIS-NN requests on a Cortex-M are not in this figure (the host
runs reference kernels); :mod:`search.measure` adds an estimate of them.

Native code behind a process wall (STYLE.md item 12): every interpreter call runs in a child process
(``search/_tflm_child.py``; each request is a whole measurement: the whole bisection, or a whole
batch of invokes) with a timeout. The child is kept for this process's next request, until it
crashes, hangs, has served :data:`CHILD_REQUESTS` requests or this process exits. A crash or hang
comes back as a :class:`MeasurementError` naming the signal and the step, never takes the caller
down, and the next request gets a fresh child. A large batch of invokes is split over this
process's share of the cores (:func:`batch_children`), one kept child each. The model is validated
by :func:`parse_tflite` in this process first, so no index the graph reader follows is out of
range when TFLM sees it.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import pickle
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from search._lazy import thread_limit
from search._tflm_child import FRAME_HEADER, HUGE_ARENA_BYTES, MIN_ARENA_BYTES, frame
from search.errors import MeasurementError

__all__ = [
    "HUGE_ARENA_BYTES",
    "MIN_ARENA_BYTES",
    "ArenaMeasurement",
    "measure_arena",
    "quantize_input",
    "run_tflm",
    "run_tflm_raw",
]

log = logging.getLogger(__name__)

#: Seconds one interpreter child may take (an arena bisection, or allocation before a batch).
CHILD_TIMEOUT_S = 300.0
#: Extra seconds a batch child gets per sample it invokes.
PER_SAMPLE_TIMEOUT_S = 2.0
#: Requests one interpreter child serves before it is replaced by a fresh one: the tflite-micro
#: binding does not free everything an interpreter allocates (about 0.27 MB per arena bisection and
#: batch of the MLPerf Tiny AD01 model here; none for VWW), so a long search's child would grow.
CHILD_REQUESTS = 200
#: Samples per child below which a batch of invokes is not split over several children.
MIN_SAMPLES_PER_CHILD = 64
#: Arena probes that may crash the interpreter (each one restarts the child) before giving up.
MAX_PROBE_CRASHES = 8
#: Test hook: "SIGSEGV", "SIGSEGV-first-probe" or "hang" makes children crash or hang on purpose
#: (see ``search._tflm_child._fault``). Only code in this
#: process can set it (tests do, through monkeypatch); no option, file or environment variable does.
_TEST_FAULT: str | None = None
_CHILD_SCRIPT = Path(__file__).resolve().with_name("_tflm_child.py")

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


@dataclass(frozen=True)
class ArenaMeasurement:
    """Smallest TFLM arena found here, its 32-bit MCU equivalent and the allocator breakdown (bytes)."""

    arena_bytes: int
    arena_bytes_32bit: int
    breakdown: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _ChildRun:
    """What one interpreter child sent back: its messages in order and how it ended."""

    messages: list[tuple[str, Any]]
    returncode: int | None
    stderr: str
    timed_out: bool

    def last(self, kind: str) -> Any:
        return next((value for k, value in reversed(self.messages) if k == kind), None)

    def where(self) -> str:
        """The native step the child was in when it stopped (its last ``stage`` or ``probe``)."""
        for kind, value in reversed(self.messages):
            if kind == "probe":
                return f"probing a {value:,} B arena"
            if kind == "stage":
                return str(value)
        return "starting the TFLite Micro interpreter"


class _Child:
    """One interpreter child (``_tflm_child.py``) that serves this process's requests in turn.

    Kept between requests: a fresh child costs about 0.2 s of Python and numpy start-up, and a
    candidate needs two (its arena, its accuracy). One that crashed, hung or timed out is not reused,
    and one that served :data:`CHILD_REQUESTS` requests is replaced.
    Its stderr goes to a temporary file (a pipe nobody reads would fill up and block it), read back
    when it dies. Both pipe ends here are non-blocking, so a request never waits past its deadline.
    """

    def __init__(self) -> None:
        self.owner = os.getpid()
        self.stderr = tempfile.TemporaryFile()
        # the child runs ``_tflm_child.py`` as a script with ``-P`` (its folder is not put on sys.path):
        # it imports numpy and tflite-micro only, not the ``search`` package, which halves its start-up
        self.proc = subprocess.Popen(
            [sys.executable, "-P", str(_CHILD_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.inp, self.out = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        os.set_blocking(self.inp, False)
        os.set_blocking(self.out, False)
        self.pending = b""
        self.served = 0

    def request(self, data: bytes, timeout: float) -> _ChildRun:
        """Send one request (a frame) and collect its messages until its result or error, the child's
        death or ``timeout`` (then the child is killed). A child that ended is closed here."""
        deadline = time.monotonic() + timeout
        messages: list[tuple[str, Any]] = []
        try:
            self._send(data, deadline)
            while True:
                message = pickle.loads(self._receive(deadline))
                messages.append(message)
                if message[0] in ("result", "error"):
                    self.served += 1
                    return _ChildRun(messages, None, "", False)
        except TimeoutError:
            timed_out = True
        except (BrokenPipeError, EOFError):  # it died
            timed_out = False
        stderr = self.close(kill=timed_out)
        return _ChildRun(messages, self.proc.returncode, stderr, timed_out)

    def _send(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            if not select.select([], [self.inp], [], max(0.0, deadline - time.monotonic()))[1]:
                raise TimeoutError
            try:
                view = view[os.write(self.inp, view) :]
            except BlockingIOError:
                continue

    def _receive(self, deadline: float) -> bytes:
        """The next frame's payload (EOFError when the child closed its end first)."""
        size = FRAME_HEADER.size
        while True:
            if len(self.pending) >= size:
                (length,) = FRAME_HEADER.unpack_from(self.pending)
                if len(self.pending) >= size + length:
                    payload, self.pending = self.pending[size : size + length], self.pending[size + length :]
                    return payload
            if not select.select([self.out], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise TimeoutError
            try:
                chunk = os.read(self.out, 1 << 20)
            except BlockingIOError:
                continue
            if not chunk:
                raise EOFError
            self.pending += chunk

    def close(self, *, kill: bool = False) -> str:
        """End the child: close its stdin (it exits at the end of its input), or kill it; returns the
        end of what it wrote to stderr."""
        if kill:
            self.proc.kill()
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # type: ignore[union-attr]
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):
            self.proc.stdout.close()  # type: ignore[union-attr]
        self.stderr.seek(0)
        text = self.stderr.read()[-4000:].decode(errors="replace")
        self.stderr.close()
        return text


class _Slot:
    """A place for one interpreter child; the requests sent to it take turns."""

    def __init__(self) -> None:
        self.child: _Child | None = None
        self.lock = threading.Lock()


#: Slot 0 serves every request; a batch split over N children (:func:`batch_children`) also uses 1..N-1.
_slots: list[_Slot] = []
_slots_lock = threading.Lock()


def _slot(index: int) -> _Slot:
    with _slots_lock:
        while len(_slots) <= index:
            _slots.append(_Slot())
        return _slots[index]


def _close_children() -> None:
    for slot in list(_slots):
        with slot.lock:
            if slot.child is not None and slot.child.owner == os.getpid():
                slot.child.close()
            slot.child = None


atexit.register(_close_children)


def _run_child(request: dict[str, Any], timeout: float, slot: int = 0) -> _ChildRun:
    """Run one request in the interpreter child of ``slot`` (started now if there is none, or the last
    one died or timed out); requests to one slot from several threads take turns."""
    data = frame({**request, "fault": _TEST_FAULT})
    place = _slot(slot)
    with place.lock:
        child = place.child
        if child is not None and child.owner != os.getpid():
            child = None  # inherited through a fork: the parent's to use and close
        if child is not None and child.proc.poll() is not None:
            child.close()  # died between requests
            child = None
        if child is None:
            child = _Child()
        place.child = child
        try:
            run = child.request(data, timeout)
        except BaseException:  # Ctrl-C and the like: never leave a child in an unknown state behind
            child.close(kill=True)
            place.child = None
            raise
        if run.returncode is not None or run.timed_out:
            place.child = None  # dead (or killed): the next request starts a fresh one
        elif child.served >= CHILD_REQUESTS:
            child.close()
            place.child = None
        return run


def _child_result(run: _ChildRun, what: str, timeout: float) -> Any:
    """The child's result, or a MeasurementError naming the signal / timeout and the step it was in."""
    if run.timed_out:
        raise MeasurementError(f"TFLite Micro timed out after {timeout:g} s while {run.where()} ({what}); child killed")
    if run.returncode is not None and run.returncode < 0:
        try:
            name = signal.Signals(-run.returncode).name
        except ValueError:
            name = f"signal {-run.returncode}"
        raise MeasurementError(f"TFLite Micro crashed ({name}) while {run.where()} ({what})")
    error = run.last("error")
    if error is not None:
        raise MeasurementError(str(error))
    for kind, value in run.messages:
        if kind == "result":
            return value
    tail = " ".join(run.stderr.strip().splitlines()[-3:])[-400:]
    raise MeasurementError(
        f"TFLite Micro child exited with status {run.returncode} without a result while {run.where()} ({what})"
        + (f": {tail}" if tail else "")
    )


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
    """Bisect the smallest arena (to ``resolution`` bytes) that TFLM allocates this model in.

    The whole bisection runs in one child process (``search/_tflm_child.py``). A probe that crashes
    the interpreter counts as "too small" (see ``bisect_arena`` there for the TFLM bug behind it) and
    a fresh child carries on; any other crash or a hang is a :class:`MeasurementError`.
    """
    if resolution < 1:
        raise MeasurementError(f"resolution must be >= 1 byte, got {resolution}")
    from search.tflite_graph import parse_tflite

    model = bytes(model)
    parse_tflite(model)  # MeasurementError on bytes that are not a valid TFLite flatbuffer
    request: dict[str, Any] = {"op": "arena", "model": model, "resolution": resolution, "crashed": []}
    for _ in range(MAX_PROBE_CRASHES + 1):
        run = _run_child(request, CHILD_TIMEOUT_S)
        probe = run.messages[-1][1] if run.messages and run.messages[-1][0] == "probe" else None
        breakdown = run.last("breakdown") or request.get("breakdown")
        signum = -run.returncode if run.returncode is not None and run.returncode < 0 and not run.timed_out else 0
        if not (signum and probe is not None and breakdown is not None and probe < HUGE_ARENA_BYTES):
            break
        log.info("TFLite Micro crashed probing a %d B arena (signal %d): counted as too small", probe, signum)
        request = {**request, "crashed": [*request["crashed"], probe], "breakdown": breakdown}
    else:
        raise MeasurementError(
            f"TFLite Micro crashed on {MAX_PROBE_CRASHES + 1} arena probes in a row "
            f"({', '.join(f'{c:,} B' for c in request['crashed'])}): arena not measured"
        )
    result = _child_result(run, "measuring the tensor arena", CHILD_TIMEOUT_S)
    arena, breakdown = int(result["arena_bytes"]), dict(result["breakdown"])
    return ArenaMeasurement(arena_bytes=arena, arena_bytes_32bit=_to_32bit(arena, breakdown), breakdown=breakdown)


def _validated(model: bytes, arena_size: int | None) -> bytes:
    from search.tflite_graph import parse_tflite

    model = bytes(model)
    parse_tflite(model)  # every index checked before native code sees the model
    if arena_size is not None and not MIN_ARENA_BYTES <= arena_size <= HUGE_ARENA_BYTES:
        raise MeasurementError(
            f"arena_size must be {MIN_ARENA_BYTES:,}..{HUGE_ARENA_BYTES:,} B, got {arena_size:,}"
            + (
                " (TFLite Micro cannot allocate this model in so small an arena)"
                if arena_size < MIN_ARENA_BYTES
                else ""
            )
        )
    return model


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


def _input_spec(model: bytes) -> tuple[tuple[int, ...], np.dtype[Any]]:
    from search.tflite_graph import parse_tflite

    graph = parse_tflite(model)
    if len(graph.inputs) < 1 or len(graph.outputs) < 1:
        raise MeasurementError(
            f"expected a model with an input and an output, found {len(graph.inputs)} input(s) and "
            f"{len(graph.outputs)} output(s)"
        )
    spec = graph.inputs[0]
    try:
        dtype = np.dtype(spec.dtype)
    except TypeError:
        raise MeasurementError(f"TFLite Micro input of dtype {spec.dtype} is not supported here") from None
    return spec.shape, dtype


def batch_children() -> int:
    """How many interpreter children a large batch of invokes is split over: this process's share of
    the cores, ``TINYFRONT_THREADS`` when it is set (each of N search workers gets cores / N), else
    every core. One search worker on two cores thus runs its deployed accuracy on both."""
    return thread_limit() or os.cpu_count() or 1


def _invoke(model: bytes, samples: np.ndarray, arena_size: int | None) -> list[np.ndarray]:
    """One output per sample, in order. A batch of at least :data:`MIN_SAMPLES_PER_CHILD` samples per
    child is split over :func:`batch_children` children running at once (each invoke is independent:
    the same outputs as one child's)."""
    parts = max(1, min(batch_children(), len(samples) // MIN_SAMPLES_PER_CHILD))
    what = f"running {len(samples)} sample(s)"

    def run(part: int, chunk: np.ndarray) -> list[np.ndarray]:
        timeout = CHILD_TIMEOUT_S + PER_SAMPLE_TIMEOUT_S * len(chunk)
        request = {"op": "run", "model": model, "x": chunk, "arena_size": arena_size}
        return list(_child_result(_run_child(request, timeout, slot=part), what, timeout))

    if parts == 1:
        return run(0, samples)
    with ThreadPoolExecutor(max_workers=parts) as pool:
        # every part runs to its end; the first failing one, in sample order, is the error raised
        return [y for outputs in pool.map(run, range(parts), np.array_split(samples, parts)) for y in outputs]


def run_tflm_raw(model: bytes, x_raw: np.ndarray, *, arena_size: int | None = None) -> np.ndarray:
    """Invoke TFLM once on one sample already in the input dtype; return the raw output tensor."""
    model = _validated(model, arena_size)
    shape, dtype = _input_spec(model)
    x_raw = np.asarray(x_raw)
    if x_raw.shape != shape:
        _check_sample_shape(shape, x_raw.shape)
        x_raw = x_raw.reshape(shape)
    return _invoke(model, x_raw.astype(dtype, copy=False)[np.newaxis], arena_size)[0]


def run_tflm(model: bytes, x: np.ndarray, *, arena_size: int | None = None) -> np.ndarray:
    """Float batch ``(N, ...)`` in, float32 outputs ``(N, ...)`` out; one TFLM invoke per sample (one child)."""
    from search.tflite_graph import parse_tflite

    model = _validated(model, arena_size)
    shape, dtype = _input_spec(model)
    x = np.asarray(x, dtype=np.float32)
    _check_sample_shape(shape, x.shape[1:])
    if len(x) == 0:
        return np.zeros((0,), dtype=np.float32)
    raw = quantize_input(model, x).reshape((len(x), *shape)).astype(dtype, copy=False)
    out = parse_tflite(model).outputs[0]
    results = []
    for y in _invoke(model, raw, arena_size):
        if np.issubdtype(y.dtype, np.integer) and out.scale is not None:
            y = (y.astype(np.float32) - float(out.zero_point or 0)) * float(out.scale)
        results.append(y.astype(np.float32).reshape(-1))
    return np.stack(results)
