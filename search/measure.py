"""Everything tinyfront reports about a .tflite on a microcontroller target, each figure labelled.

- flash: the model C array (measured) + TFLM/CMSIS-NN code (estimated from real links), :mod:`search.flash`;
- arena: the smallest TFLM arena, bisected with the real interpreter here, :mod:`search.tflm`;
- sram: the 32-bit arena + an estimate of CMSIS-NN kernel scratch + static RAM (from real links) + stack;
- latency: the per-layer cost model of :mod:`search.latency_model` (estimated).

With a device runner (:func:`device_runner_for`: a CMSIS-NN TFLite Micro tree in
``$TINYFRONT_TFLM_DIR``, ``arm-none-eabi-g++`` and ``qemu-system-arm`` here, and a core with a fitted
CPI), the model also runs on the device's own TFLM + CMSIS-NN code in QEMU
(:mod:`search.device_runner`): a model its kernels refuse is a failed candidate with the kernel's
reason; SRAM becomes the smallest arena that allocates with those kernels plus the peak stack of
``AllocateTensors()`` + ``Invoke()``, both measured there, plus the static data of the real links
(estimated); the latency becomes measured instructions x the calibrated cycles-per-instruction of
:mod:`search.cpi_model` (the target's ``latency_calibration`` from ``tinyfront calibrate`` when
``targets.toml`` names one, else the shipped fit), estimated with its 90 % interval. Without a
runner the figures above are used, and each figure's method says which source it came from.

SRAM beyond the arena (documented estimates):

- CMSIS-NN scratch: the host runs reference kernels, which request no scratch; on a Cortex-M the
  CMSIS-NN convolutions do. ``arm_convolve_s8`` (DSP) asks for 2 im2col columns of int16,
  ``4 * k_h * k_w * in_c`` bytes, ``arm_depthwise_conv_s8_opt`` for ``2 * k_h * k_w * in_c``.
  Scratch lives in the arena head only while its op runs, so the peak grows by at most the largest
  request: :func:`cmsis_scratch_bytes` adds that maximum (an upper bound: 1x1 convolutions need none).
- static RAM: ``.data + .bss`` outside the arena (the static MicroInterpreter and resolver objects,
  newlib's and the kernels' own data) of the calibration links for the target's core,
  :func:`search.flash.static_ram_bytes` (measured there, so an estimate here).
- :data:`STACK_BYTES_ESTIMATE` (1.5 KiB): the peak stack of ``AllocateTensors()`` + ``Invoke()`` that
  the device runner measured (stack painting, TFLM + CMSIS-NN -O2 in QEMU) on the 8 MLPerf Tiny models:
  656-1,492 B on Cortex-M4 and M33; the estimate is the largest, rounded up to 512 B. With a runner
  (below) each candidate's own stack is measured instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from search.errors import CandidateError
from search.figures import Figure
from search.flash import flash_estimate, registration_keys, static_ram_bytes
from search.latency_model import estimate_mcu_latency
from search.targets import Target
from search.tflite_graph import GraphInfo, parse_tflite
from search.tflm import ArenaMeasurement, measure_arena

#: Peak stack of AllocateTensors() + Invoke(): the largest the device runner measured on the MLPerf Tiny
#: models (1,492 B on Cortex-M4 and M33, see the module docstring), rounded up to 512 B.
STACK_BYTES_ESTIMATE = 1536
#: Stated error of the SRAM figure beyond the measured arena (the scratch and overhead estimates).
SRAM_EXTRA_ERROR_PCT = 50.0


@dataclass(frozen=True)
class ModelMeasurement:
    """Flash, SRAM, arena and latency of one model on one MCU target, plus its graph summary."""

    flash: dict[str, Figure]
    sram: Figure
    arena: ArenaMeasurement
    latency: Figure
    graph: GraphInfo

    def to_dict(self) -> dict[str, Any]:
        return {
            "flash": {k: v.to_dict() for k, v in self.flash.items()},
            "sram": self.sram.to_dict(),
            "arena": self.arena.to_dict(),
            "latency": self.latency.to_dict(),
            "graph": self.graph.to_dict(),
        }


def cmsis_scratch_bytes(graph: GraphInfo) -> int:
    """Largest CMSIS-NN (DSP extension) scratch buffer any conv layer of ``graph`` requests (estimate)."""
    largest = 0
    for layer in graph.layers:
        if not layer.macs or len(layer.output_shape) != 4:
            continue
        per_output = layer.macs // max(1, math.prod(layer.output_shape[1:]))  # k_h*k_w*in_c or k_h*k_w
        if layer.op == "CONV_2D":
            largest = max(largest, 4 * per_output)
        elif layer.op == "DEPTHWISE_CONV_2D":
            largest = max(largest, 2 * per_output * layer.output_shape[-1])
    return largest


def measure_tflite(model: bytes, target: Target) -> ModelMeasurement:
    """Measure ``model`` for the TFLite Micro target ``target`` (CandidateError for other runtimes)."""
    if not target.is_mcu:
        raise CandidateError(
            f"measure_tflite measures TFLite Micro targets: expected runtime 'tflm', found '{target.runtime}' "
            f"(target '{target.name}')"
        )
    model = bytes(model)
    graph = parse_tflite(model)
    arena = measure_arena(model)
    device = _device_figures(model, graph, target)
    if device is not None:
        return ModelMeasurement(
            flash=flash_estimate(model, graph, target.core), sram=device[0], arena=arena, latency=device[1], graph=graph
        )
    scratch = cmsis_scratch_bytes(graph)
    static = static_ram_bytes(registration_keys(model), target.core)
    extra = scratch + STACK_BYTES_ESTIMATE
    sram_bytes = arena.arena_bytes_32bit + static + extra
    sram = Figure(
        round(sram_bytes / 1024, 2),
        "kB",
        "estimated",
        f"TFLM arena {arena.arena_bytes:,} B measured here, {arena.arena_bytes_32bit:,} B for 32-bit pointers, "
        f"+ static data {static:,} B (linked on {target.core}) + CMSIS-NN scratch {scratch:,} B "
        f"+ stack {STACK_BYTES_ESTIMATE:,} B (largest measured on the MLPerf Tiny models in QEMU) (estimates)",
        error_pct=round(SRAM_EXTRA_ERROR_PCT * extra / sram_bytes, 1),
    )
    return ModelMeasurement(
        flash=flash_estimate(model, graph, target.core),
        sram=sram,
        arena=arena,
        latency=estimate_mcu_latency(graph, target.core, target.clock_mhz),
        graph=graph,
    )


#: Stated error of the static RAM part of a runner-measured SRAM figure (taken from the calibration
#: links, :func:`search.flash.static_ram_bytes`, not from this model's own link).
DEVICE_STATIC_RAM_ERROR_PCT = 25.0


def device_runner_for(target: Target) -> str | None:
    """The runner core that measures ``target``'s candidates here, or None (then the host figures are used)."""
    from search.cpi_model import CPI_CLASS, RUNNER_FOR_CORE
    from search.device_runner import runner_available

    core = target.core.strip().lower()
    runner_core = RUNNER_FOR_CORE.get(core)
    if runner_core is None or core not in CPI_CLASS or not runner_available(runner_core):
        return None
    return runner_core


def _device_figures(model: bytes, graph: GraphInfo, target: Target) -> tuple[Figure, Figure] | None:
    """(SRAM, latency) measured on the device runner, or None without one; a refused model is a CandidateError.

    Without a calibrated CPI for the core's class (Cortex-M7 in the shipped fit), the latency is the
    per-layer MAC model's, and its method says so; SRAM is still measured on the device.
    """
    if device_runner_for(target) is None:
        return None
    from search.device_runner import device_figures

    figs = device_figures(model, target.core, target.clock_mhz, calibration=target.latency_calibration)
    if not figs.deployable or figs.arena is None or figs.stack is None or figs.instructions is None:
        raise CandidateError(
            f"the model does not run with the device's own kernels on {target.core} "
            f"({figs.measurement.board}, TFLM + CMSIS-NN in QEMU): {figs.reason or 'no instruction count'}"
        )
    arena, stack = int(figs.arena.value), int(figs.stack.value)
    static = static_ram_bytes(registration_keys(model), target.core)
    total = arena + stack + static
    sram = Figure(
        round(total / 1024, 2),
        "kB",
        "estimated",
        f"arena {arena:,} B and peak stack {stack:,} B measured on the device's TFLM + CMSIS-NN code "
        f"({figs.measurement.board}, QEMU) + static data {static:,} B (linked on {target.core}, estimate)",
        error_pct=round(DEVICE_STATIC_RAM_ERROR_PCT * static / total, 1),
    )
    latency = figs.latency
    if latency is None:
        mac = estimate_mcu_latency(graph, target.core, target.clock_mhz)
        calibration = target.latency_calibration or "the shipped cpi_fit"
        note = (
            f"; the device runner measured {int(figs.instructions.value):,} instructions, but {calibration} "
            f"has no CPI for {target.core}"
        )
        latency = replace(mac, method=mac.method + note)
    return sram, latency
