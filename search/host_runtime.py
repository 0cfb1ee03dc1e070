"""Run deployed artifacts with the real Linux-board runtimes on this host.

ONNX Runtime runs ``.onnx``; LiteRT's interpreter (``tf.lite.Interpreter``) runs ``.tflite``.
Latency is measured here, batch 1, after warm-up, and reported as p50 and p99; peak memory is
measured in a child process so that it covers only the runtime and the model.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from search import _lazy
from search.errors import MeasurementError

WARMUP_RUNS = 10
TIMED_RUNS = 100


def host_name() -> str:
    """The CPU this host runs, e.g. ``Intel(R) Xeon(R) ... (x86_64, 2 cores)``."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return f"{model} ({platform.machine()}, {os.cpu_count()} cores)"


@dataclass(frozen=True)
class LatencyStats:
    p50_ms: float
    p99_ms: float
    runs: int
    host: str


class _Runner:
    """One loaded model with a ``run(batch_of_one) -> outputs`` method."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.suffix == ".onnx":
            ort = _lazy.require("onnxruntime")
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            self._sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            self._in = self._sess.get_inputs()[0].name
            self.quant: tuple[float, int] | None = None
            self.out_quant: tuple[float, int] | None = None
            self.in_dtype: Any = np.float32
        else:
            tf = _lazy.tensorflow()
            self._interp = tf.lite.Interpreter(model_path=str(path), num_threads=1)
            self._interp.allocate_tensors()
            inp = self._interp.get_input_details()[0]
            out = self._interp.get_output_details()[0]
            self._in_index, self._out_index = inp["index"], out["index"]
            self.in_dtype = inp["dtype"]
            self.quant = tuple(inp["quantization"]) if inp["dtype"] != np.float32 else None  # type: ignore[assignment]
            self.out_quant = tuple(out["quantization"]) if out["dtype"] != np.float32 else None  # type: ignore[assignment]

    def prepare(self, x: np.ndarray) -> np.ndarray:
        if self.quant is None:
            return x.astype(np.float32)
        scale, zero = self.quant
        info = np.iinfo(self.in_dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(self.in_dtype)

    def run(self, xb: np.ndarray) -> np.ndarray:
        if self.path.suffix == ".onnx":
            return np.asarray(self._sess.run(None, {self._in: xb})[0])
        self._interp.set_tensor(self._in_index, xb)
        self._interp.invoke()
        out = self._interp.get_tensor(self._out_index)
        if self.out_quant is not None:
            scale, zero = self.out_quant
            return (out.astype(np.float32) - zero) * scale
        return np.asarray(out)


def predict(path: Path, x: np.ndarray) -> np.ndarray:
    """Float outputs of the artifact for each sample of ``x`` (run one at a time, batch 1)."""
    runner = _Runner(path)
    return np.concatenate([runner.run(runner.prepare(x[i : i + 1])) for i in range(len(x))], axis=0)


def measure_latency(path: Path, sample: np.ndarray, runs: int = TIMED_RUNS, warmup: int = WARMUP_RUNS) -> LatencyStats:
    """p50 / p99 latency of one inference (batch 1, one thread) on this host."""
    if runs < 50:
        raise MeasurementError(f"latency needs at least 50 timed runs for a p99, got {runs}")
    runner = _Runner(path)
    xb = runner.prepare(sample[np.newaxis, ...])
    for _ in range(warmup):
        runner.run(xb)
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        runner.run(xb)
        times[i] = (time.perf_counter() - start) * 1000.0
    return LatencyStats(float(np.percentile(times, 50)), float(np.percentile(times, 99)), runs, host_name())


_PEAK_SCRIPT = """
import json, sys, numpy as np
path = sys.argv[1]
import onnxruntime as ort
def rss_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
base = rss_kb()
opts = ort.SessionOptions(); opts.intra_op_num_threads = 1
sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0]
shape = [1 if not isinstance(d, int) else d for d in inp.shape]
x = np.zeros(shape, dtype=np.float32)
for _ in range(5):
    sess.run(None, {inp.name: x})
print(json.dumps({"base_kb": base, "peak_kb": rss_kb()}))
"""


def onnx_peak_memory_kb(path: Path) -> float:
    """Resident memory added by loading and running the ONNX model (KB), measured in a child process:
    RSS after session creation and five inferences minus RSS after importing onnxruntime (Linux)."""
    proc = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(path)], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise MeasurementError(f"peak-memory probe failed: {proc.stderr.strip().splitlines()[-1:]}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(max(0, data["peak_kb"] - data["base_kb"]))
