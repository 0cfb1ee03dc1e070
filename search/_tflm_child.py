"""The child process that runs the TFLite Micro interpreter for :mod:`search.tflm` (STYLE.md item 12).

Run as a script (``python -P search/_tflm_child.py``, by :mod:`search.tflm`): it reads pickled
requests from stdin, one at a time until stdin ends, does each whole job (an arena bisection, or
every invoke of a batch) and writes pickled messages to its original stdout: ``("stage", text)``
before each native step, then ``("result", value)`` or ``("error", text)``. Requests and messages
are length-prefixed frames (:func:`frame`). Its fd 1 is pointed at fd 2 first, so nothing the
native code prints can corrupt the message stream. When the interpreter crashes or hangs, the
parent reads the last ``stage`` message to say where. Each job builds its own interpreters and
drops them; nothing of one request is kept for the next.

This module imports numpy and the ``tflite-micro`` runtime only (no TensorFlow, not the ``search``
package); the parent imports it for its constants only: only the child touches native TFLM code.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import signal
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

import numpy as np

#: Arenas below this are never handed to TFLM: the host build places its allocator objects in the
#: arena unchecked and segfaults on arenas of a few hundred bytes (seen below ~500 B).
MIN_ARENA_BYTES = 1024
#: Arena tried first; a model that does not allocate in it is reported as unmeasurable.
HUGE_ARENA_BYTES = 64 * 1024 * 1024

Send = Callable[[tuple[str, Any]], None]


class ChildError(Exception):
    """A failure the child reports as a reason (becomes a MeasurementError in the parent)."""


@contextlib.contextmanager
def _capture_fd2() -> Iterator[list[str]]:
    """Redirect file descriptor 2 (where TFLM's DebugLog writes) into a list of one string."""
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
    from tflite_micro.python.tflite_micro import runtime

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
    import re

    with _capture_fd2() as printed:
        interpreter.print_allocations()
    text = printed[0]
    result = {m.group(1): int(m.group(2)) for m in re.finditer(r"Arena allocation (total|head|tail) (\d+) bytes", text)}
    result.update({m.group(1): int(m.group(2)) for m in re.finditer(r"'([^']+)' used (\d+) bytes", text)})
    return result


def bisect_arena(request: dict[str, Any], send: Send) -> dict[str, Any]:
    """Smallest arena (to ``resolution`` bytes) that allocates; sizes in ``request["crashed"]`` count as failing.

    Why a probe can crash (tflite-micro 0.dev20261023, reference kernels): ``CalculateOpDataConv`` and
    ``CalculateOpDataDepthwiseConv`` (kernels/conv_common.cc, depthwise_conv_common.cc) allocate the
    bias temp tensor with ``AllocateTempInputTensor`` and never check it for nullptr (input, filter and
    output are checked). When the arena runs out exactly at the bias (its TfLiteTensor or quantisation
    record does not fit in the temp space), ``bias`` is nullptr and the kernel then calls
    ``MicroAllocator::DeallocateTempTfLiteTensor(bias)``, which reads ``bias->quantization`` (its
    ``TFLITE_DCHECK(tensor != nullptr)`` is compiled out): SIGSEGV. It only happens on a failing
    allocation, so an arena whose probe crashed is too small: the parent records the size, starts a
    new child with it in ``crashed`` and the bisection goes on (same answer, one extra child).
    """
    model: bytes = request["model"]
    resolution: int = request["resolution"]
    crashed: set[int] = set(request.get("crashed", ()))
    breakdown: dict[str, int] | None = request.get("breakdown")

    def allocates(size: int) -> bool:
        if size in crashed:
            return False
        send(("probe", size))
        if request.get("fault") == "SIGSEGV-first-probe" and not crashed:
            _fault("SIGSEGV")
        return _try_allocate(model, size)[0] is not None

    if breakdown is None:
        send(("stage", f"allocating the model in a {HUGE_ARENA_BYTES // 2**20} MiB arena"))
        interpreter, reason = _try_allocate(model, HUGE_ARENA_BYTES)
        if interpreter is None:
            raise ChildError(
                f"TFLite Micro cannot allocate this model even with a {HUGE_ARENA_BYTES // 2**20} MiB arena: "
                f"{reason or 'no reason given'}"
            )
        send(("stage", "reading the allocation breakdown"))
        breakdown = _breakdown(interpreter)
        del interpreter
        send(("breakdown", breakdown))
    # The recorded total is where the search starts; bisection then finds the real minimum, which
    # can exceed the total for tiny models: the memory planner's temporary buffers (freed after
    # planning) must fit too (AD01: total 3,984 B, smallest arena that allocates 4,634 B).
    # No arena below the recorded total can allocate (it is what the allocator placed).
    total = breakdown.get("total", HUGE_ARENA_BYTES)
    if allocates(total):
        return {"arena_bytes": total, "breakdown": breakdown}
    lo, hi = total, total
    while not allocates(hi):
        if hi >= HUGE_ARENA_BYTES:
            raise ChildError(f"TFLite Micro allocated this model in {HUGE_ARENA_BYTES:,} B once, then no longer")
        lo, hi = hi, min(HUGE_ARENA_BYTES, hi + max(resolution, hi // 16))
    while hi - lo > resolution:
        mid = (lo + hi) // 2
        if allocates(mid):
            hi = mid
        else:
            lo = mid
    return {"arena_bytes": hi, "breakdown": breakdown}


def _interpreter(model: bytes, arena_size: int | None, send: Send) -> Any:
    size = arena_size if arena_size is not None else HUGE_ARENA_BYTES
    send(("stage", f"allocating the model in a {size:,} B arena"))
    interpreter, reason = _try_allocate(model, size)
    if interpreter is None:
        raise ChildError(f"TFLite Micro cannot allocate this model in a {size:,} B arena: {reason}")
    return interpreter


def run_batch(request: dict[str, Any], send: Send) -> list[np.ndarray]:
    """Invoke the model once per sample of ``request["x"]`` (already in the input dtype and shape)."""
    interpreter = _interpreter(request["model"], request.get("arena_size"), send)
    samples: np.ndarray = request["x"]
    outputs = []
    for i, sample in enumerate(samples):
        send(("stage", f"invoking the model on sample {i + 1} of {len(samples)}"))
        interpreter.set_input(sample, 0)
        interpreter.invoke()
        outputs.append(np.array(interpreter.get_output(0)))
    return outputs


JOBS: dict[str, Callable[[dict[str, Any], Send], Any]] = {
    "arena": bisect_arena,
    "run": run_batch,
}


def _fault(kind: str | None) -> None:
    """Test hook (set only through ``search.tflm._TEST_FAULT`` by tests): crash or hang on purpose.

    ``"SIGSEGV"`` and ``"hang"`` act before the job starts; ``"SIGSEGV-first-probe"`` crashes on the
    first arena probe of a child that was given no crashed sizes (see :func:`bisect_arena`).
    """
    if kind == "SIGSEGV":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif kind == "hang":
        time.sleep(3600)


#: Every request and message is one frame: its length as 8 bytes (little-endian) and a pickle.
FRAME_HEADER = struct.Struct("<Q")


def read_frame(stream: IO[bytes]) -> bytes | None:
    """The next frame's payload from a blocking stream, or None at its end."""
    header = stream.read(FRAME_HEADER.size)
    if len(header) < FRAME_HEADER.size:
        return None
    (size,) = FRAME_HEADER.unpack(header)
    payload = stream.read(size)
    return payload if len(payload) == size else None


def frame(message: Any) -> bytes:
    """``message`` pickled, as one frame."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME_HEADER.pack(len(payload)) + payload


def main(stdin: IO[bytes], channel: IO[bytes]) -> int:
    """Serve requests in turn until stdin ends (the parent closed it, or died): one job each, whose
    last message is ``("result", value)`` or ``("error", text)``."""

    def send(message: tuple[str, Any]) -> None:
        channel.write(frame(message))
        channel.flush()

    while (payload := read_frame(stdin)) is not None:
        request = pickle.loads(payload)
        try:
            _fault(request.get("fault"))
            send(("result", JOBS[request["op"]](request, send)))
        except ChildError as exc:
            send(("error", str(exc)))
        except Exception as exc:  # a reason for the parent, never a traceback
            send(("error", f"{type(exc).__name__}: {exc}"))
    return 0


if __name__ == "__main__":
    # Messages go to the original stdout; anything printed to fd 1 afterwards lands on stderr.
    _channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.exit(main(sys.stdin.buffer, _channel))
