"""The device runner: measure any ``.tflite`` on the device's own TFLM + CMSIS-NN code in QEMU.

One firmware image per core class (:func:`build_runner`, cached per tree and core) loads a model
placed in memory by QEMU and reports allocation, the smallest arena, peak stack, output bytes and
per-operator instruction counts (:func:`run_runner`).
"""

from __future__ import annotations

from firmware_export.device.runner._runner import (
    RUNNER_OPS,
    RUNNER_OPT,
    RunnerOutput,
    build_runner,
    pack_blob,
    parse_runner,
    run_runner,
    runner_board,
)

__all__ = [
    "RUNNER_OPS",
    "RUNNER_OPT",
    "RunnerOutput",
    "build_runner",
    "pack_blob",
    "parse_runner",
    "run_runner",
    "runner_board",
]
