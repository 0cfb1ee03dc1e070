"""Everything tinyfront reports about a .tflite on a microcontroller target, each figure labelled.

- flash: the model C array (measured) + TFLM/CMSIS-NN code (estimated from real links), :mod:`search.flash`;
- arena: the smallest TFLM arena, bisected with the real interpreter here, :mod:`search.tflm`;
- sram: the 32-bit arena + an estimate of CMSIS-NN kernel scratch + static RAM (from real links) + stack;
- latency: the per-layer cost model of :mod:`search.latency_model` (estimated).

SRAM beyond the arena (documented estimates):

- CMSIS-NN scratch: the host runs reference kernels, which request no scratch; on a Cortex-M the
  CMSIS-NN convolutions do. ``arm_convolve_s8`` (DSP) asks for 2 im2col columns of int16,
  ``4 * k_h * k_w * in_c`` bytes, ``arm_depthwise_conv_s8_opt`` for ``2 * k_h * k_w * in_c``.
  Scratch lives in the arena head only while its op runs, so the peak grows by at most the largest
  request: :func:`cmsis_scratch_bytes` adds that maximum (an upper bound: 1x1 convolutions need none).
- static RAM: ``.data + .bss`` outside the arena (the static MicroInterpreter and resolver objects,
  newlib's and the kernels' own data) of the calibration links for the target's core,
  :func:`search.flash.static_ram_bytes` (measured there, so an estimate here).
- :data:`STACK_BYTES_ESTIMATE` (3 KB): stack used by ``main()`` through ``Invoke()`` and the kernels.
  NOT yet measured: a round figure kept from the earlier estimate until QEMU runs of the exported
  bundle (stack painting) replace it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from search.errors import CandidateError
from search.figures import Figure
from search.flash import flash_estimate, registration_keys, static_ram_bytes
from search.latency_model import estimate_mcu_latency
from search.targets import Target
from search.tflite_graph import GraphInfo, parse_tflite
from search.tflm import ArenaMeasurement, measure_arena

#: Peak stack of main() through Invoke(): an estimate, not yet measured in QEMU (see the module docstring).
STACK_BYTES_ESTIMATE = 3 * 1024
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
        f"+ stack {STACK_BYTES_ESTIMATE:,} B (estimates; stack not yet measured)",
        error_pct=round(SRAM_EXTRA_ERROR_PCT * extra / sram_bytes, 1),
    )
    return ModelMeasurement(
        flash=flash_estimate(model, graph, target.core),
        sram=sram,
        arena=arena,
        latency=estimate_mcu_latency(graph, target.core, target.clock_mhz),
        graph=graph,
    )
