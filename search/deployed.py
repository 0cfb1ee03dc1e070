"""Measure a converted artifact on its target: footprint, latency and deployed accuracy.

Microcontroller targets run the ``.tflite`` in the real TFLite Micro interpreter (accuracy,
tensor arena) and estimate latency with the calibrated cost model. Linux boards run the
artifact in ONNX Runtime (``.onnx``) or LiteRT (``.tflite``) on this host and measure p50/p99
latency; the board's latency is the host figure times the target's ``host_scale`` when one is set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from search.errors import CandidateError
from search.figures import Figure
from search.targets import Target

#: Fixed RAM a Linux process needs besides the model is not counted: the budget is for the model.
_KB = 1024.0


@dataclass
class Deployment:
    """Footprint and latency figures of one artifact on one target."""

    figures: dict[str, Figure]
    ops: list[str] = field(default_factory=list)
    layers: list[dict[str, Any]] = field(default_factory=list)
    zero_weight_fraction: float | None = None


def artifact_path(artifacts_dir: Path, target: Target) -> Path:
    """The file the target's runtime runs: ``model.onnx`` for ONNX Runtime, else ``model.tflite``."""
    name = "model.onnx" if target.runtime == "onnxruntime" else "model.tflite"
    path = artifacts_dir / name
    if not path.exists():
        raise CandidateError(f"{target.name} runs {target.runtime}, which needs {name}; {artifacts_dir} has none")
    return path


def measure_deployment(artifacts_dir: Path, target: Target, sample: np.ndarray) -> Deployment:
    """Flash, SRAM and latency of the target's artifact in ``artifacts_dir``."""
    path = artifact_path(artifacts_dir, target)
    if target.is_mcu:
        return _measure_mcu(path.read_bytes(), target)
    return _measure_linux(path, target, sample)


def deployed_accuracy(artifacts_dir: Path, target: Target, x: np.ndarray, y: np.ndarray) -> Figure:
    """Top-1 accuracy of the artifact run in the target's runtime on (x, y)."""
    path = artifact_path(artifacts_dir, target)
    if target.is_mcu:
        from search.tflm import run_tflm

        outputs = run_tflm(path.read_bytes(), x)
        runtime = "TFLite Micro interpreter (tflite-micro)"
    else:
        from search.host_runtime import predict

        outputs = predict(path, x)
        runtime = "ONNX Runtime (CPU)" if path.suffix == ".onnx" else "LiteRT interpreter"
    acc = float(np.mean(np.argmax(outputs, axis=1) == y))
    return Figure(acc, "fraction", "measured", f"{path.name} in {runtime} on {len(y)} validation samples")


def _measure_mcu(model: bytes, target: Target) -> Deployment:
    from search.measure import measure_tflite

    m = measure_tflite(model, target)
    arena = m.arena
    figures = {
        "flash_kb": m.flash["total"],
        "model_flash_kb": m.flash["model"],
        "runtime_code_kb": m.flash["runtime_code"],
        "sram_kb": m.sram,
        "arena_bytes": Figure(
            float(arena.arena_bytes),
            "B",
            "measured",
            "smallest tensor arena that allocates in the TFLite Micro interpreter on this host (bisected)",
        ),
        "latency_ms": m.latency,
    }
    layers = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(layer).items()} for layer in m.graph.layers]
    return Deployment(figures, list(m.graph.ops), layers, m.graph.zero_weight_fraction)


def _measure_linux(path: Path, target: Target, sample: np.ndarray) -> Deployment:
    from search.host_runtime import measure_latency, onnx_peak_memory_kb

    stats = measure_latency(path, sample)
    size_kb = path.stat().st_size / _KB
    figures: dict[str, Figure] = {
        "flash_kb": Figure(size_kb, "KB", "measured", f"size of {path.name} as stored"),
        "model_flash_kb": Figure(size_kb, "KB", "measured", f"size of {path.name} as stored"),
        "host_latency_ms": Figure(
            stats.p50_ms, "ms", "measured", f"p50 of {stats.runs} runs, batch 1, one thread, on {stats.host}"
        ),
        "host_latency_p99_ms": Figure(
            stats.p99_ms, "ms", "measured", f"p99 of {stats.runs} runs, batch 1, one thread, on {stats.host}"
        ),
    }
    if target.host_scale:
        how = f"host p{{}} x host_scale {target.host_scale:g} (a rough, uncalibrated host-to-{target.name} factor)"
        figures["latency_ms"] = Figure(stats.p50_ms * target.host_scale, "ms", "estimated", how.format(50))
        figures["latency_p99_ms"] = Figure(stats.p99_ms * target.host_scale, "ms", "estimated", how.format(99))
    else:
        figures["latency_ms"] = figures["host_latency_ms"]
        figures["latency_p99_ms"] = figures["host_latency_p99_ms"]
    ops: list[str] = []
    if path.suffix == ".onnx":
        import onnx

        proto = onnx.load(str(path))
        ops = sorted({node.op_type for node in proto.graph.node})
        peak = onnx_peak_memory_kb(path)
        figures["sram_kb"] = Figure(
            peak,
            "KB",
            "measured",
            "resident memory added by loading and running the model in ONNX Runtime on this host",
        )
    else:
        from search.tflite_graph import parse_tflite

        graph = parse_tflite(path.read_bytes())
        ops = list(graph.ops)
        activations = max((layer.activation_bytes for layer in graph.layers), default=0)
        figures["sram_kb"] = Figure(
            (graph.model_bytes + activations) / _KB,
            "KB",
            "estimated",
            "model bytes + largest layer's input and output tensors (LiteRT keeps the model in RAM)",
        )
    return Deployment(figures, ops)
