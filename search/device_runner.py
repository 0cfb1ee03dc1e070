"""Measure a ``.tflite`` on the device's own TFLite Micro + CMSIS-NN code, emulated in QEMU.

:func:`run_on_device` runs the device runner of a core class (one firmware image per core, built
once per TFLM tree and cached, see :mod:`firmware_export.device.runner`) on a model and an input.
What it returns is measured on the device's code: whether ``AllocateTensors()`` succeeds with the
device kernels, the smallest arena that allocates (their scratch buffers included), the peak
stack, the output bytes and the dynamic instruction counts (per operator and in total) under
``qemu-system-arm -icount shift=0``. Instruction counts are not cycles: :mod:`search.cpi_model`
turns them into a calibrated latency estimate.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from search.errors import MeasurementError
from search.figures import Figure

#: Core classes with a runner (the QEMU boards' cores).
RUNNER_CORES: tuple[str, ...] = ("cortex-m4", "cortex-m33", "cortex-m7", "cortex-m55")
#: Seed of the input used when the caller gives none.
DEFAULT_INPUT_SEED = 0


@dataclass(frozen=True)
class DeviceMeasurement:
    """What the device runner measured for one model on one core (``error`` says why a part is missing)."""

    core: str
    board: str
    allocated: bool
    arena_min: int | None  # smallest arena (bytes) AllocateTensors() accepts with the device kernels
    arena_used: int | None  # arena_used_bytes() when allocated in the runner's whole arena
    arena_check: bool | None  # did exactly ``check_arena`` bytes allocate (None: not asked)
    stack_peak: int | None  # bytes of stack used by AllocateTensors() + Invoke() (stack painting)
    instructions: int | None  # executed instructions of one Invoke()
    op_instructions: tuple[tuple[str, int], ...]  # (operator, instructions) in execution order
    outputs: tuple[bytes, ...]
    input: bytes
    error: str | None
    optimisation: str

    @property
    def ok(self) -> bool:
        return self.error is None


def runner_available(core: str, tree: Path | str | None = None) -> bool:
    """True when a CMSIS-NN tree (``tree`` or $TINYFRONT_TFLM_DIR), the Arm compiler and QEMU are here."""
    if core not in RUNNER_CORES:
        return False
    root = tree if tree is not None else os.environ.get("TINYFRONT_TFLM_DIR")
    if not root or not (Path(root) / "third_party" / "cmsis_nn" / "Include").is_dir():
        return False
    return all(shutil.which(t) for t in ("arm-none-eabi-g++", "qemu-system-arm", "make"))


def default_input(model: bytes, seed: int = DEFAULT_INPUT_SEED) -> bytes:
    """Seeded random bytes for every input tensor of ``model`` (in order), in the tensors' dtypes."""
    from search.tflite_graph import parse_tflite

    rng = np.random.default_rng(seed)
    parts = []
    for tensor in parse_tflite(model).inputs:
        dtype = np.dtype(tensor.dtype)
        count = int(np.prod(tensor.shape)) if tensor.shape else 1
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            values = rng.integers(info.min, int(info.max) + 1, size=count, dtype=np.int64).astype(dtype)
        else:
            values = rng.standard_normal(count).astype(dtype)
        parts.append(values.tobytes())
    return b"".join(parts)


def run_on_device(
    model: bytes,
    core: str,
    input: bytes | None = None,  # noqa: A002 - the brief's name
    *,
    tree: Path | str | None = None,
    cache_dir: Path | None = None,
    check_arena: int = 0,
    timeout_s: float = 300.0,
) -> DeviceMeasurement:
    """Run ``model`` on ``core``'s device runner in QEMU (a child process with ``timeout_s``).

    ``input``: the bytes of every input tensor in order; None: :func:`default_input`. The runner
    image is built on first use (minutes: the TFLM library) and cached. A model that does not
    allocate comes back with ``allocated`` False and the runner's reason in ``error``; a missing
    tree, compiler or QEMU, a failed build or a hang raise a :class:`MeasurementError`.
    """
    from firmware_export.device import DeviceError
    from firmware_export.device.runner import RUNNER_OPT, build_runner, run_runner

    if core not in RUNNER_CORES:
        raise MeasurementError(f"no device runner for core '{core}'; runners exist for: {', '.join(RUNNER_CORES)}")
    data = default_input(model) if input is None else bytes(input)
    try:
        image = build_runner(core, tree, cache_dir)
        out = run_runner(image, core, model, data, check_arena=check_arena, timeout_s=timeout_s)
    except DeviceError as exc:
        raise MeasurementError(f"device runner for {core}: {exc}") from None
    return DeviceMeasurement(
        core=core,
        board=out.board,
        allocated=out.allocated,
        arena_min=out.arena_min,
        arena_used=out.arena_used,
        arena_check=out.arena_check,
        stack_peak=out.stack_peak,
        instructions=out.instructions,
        op_instructions=out.op_instructions,
        outputs=out.outputs,
        input=data,
        error=out.error,
        optimisation=RUNNER_OPT,
    )


@dataclass(frozen=True)
class DeviceFigures:
    """What the search records for a TFLM candidate when a runner is available."""

    deployable: bool
    reason: str | None
    latency: Figure | None  # estimated: instructions x calibrated CPI, 90 % interval (None: no CPI for the class)
    arena: Figure | None  # measured on the device's code: smallest arena that allocates
    stack: Figure | None  # measured on the device's code: peak stack of AllocateTensors() + Invoke()
    instructions: Figure | None  # measured: executed instructions of one Invoke() (not cycles)
    measurement: DeviceMeasurement


def device_figures(
    model: bytes,
    core: str,
    clock_mhz: float,
    input: bytes | None = None,  # noqa: A002
    *,
    tree: Path | str | None = None,
    cache_dir: Path | None = None,
    calibration: Path | str | None = None,
) -> DeviceFigures:
    """Run ``model`` on ``core``'s device runner and turn what it measured into Figures.

    Arena, stack and instruction count are ``measured`` (on the device's TFLM + CMSIS-NN code,
    emulated); the latency is ``estimated`` by :mod:`search.cpi_model` and names its calibration:
    ``calibration`` (a file in :func:`search.cpi_model.load_fit`'s format, e.g. a target's
    ``latency_calibration``) or, when None, the shipped ``cpi_fit.json``.
    A model that does not allocate comes back with ``deployable`` False and the runner's reason.
    When the calibration has no CPI for the core's class (Cortex-M7 in the shipped fit: no fitted
    rows), ``latency`` is None and the rest is still measured.
    """
    from search.cpi_model import CPI_CLASS, RUNNER_FOR_CORE, estimate_latency, load_fit
    from search.tflite_graph import parse_tflite

    runner_core = RUNNER_FOR_CORE.get(core.strip().lower())
    if runner_core is None:
        raise MeasurementError(f"no device runner for core '{core}'; runners exist for: {', '.join(RUNNER_CORES)}")
    fit = load_fit(Path(calibration) if calibration is not None else None)
    m = run_on_device(model, runner_core, input, tree=tree, cache_dir=cache_dir)
    where = f"device runner {m.core} ({m.board}, QEMU), TFLM + CMSIS-NN {m.optimisation}"
    if not m.allocated or m.instructions is None:
        return DeviceFigures(False, m.error, None, None, None, None, m)
    latency = None
    if CPI_CLASS.get(core.strip().lower()) in fit[0].cpi:
        latency = estimate_latency(m.instructions, parse_tflite(model).weight_bytes, core, clock_mhz, calibration=fit)
    arena = Figure(float(m.arena_min or 0), "B", "measured", f"smallest arena that allocates, {where}")
    stack = Figure(float(m.stack_peak or 0), "B", "measured", f"peak stack by stack painting, {where}")
    count = Figure(float(m.instructions), "instructions", "measured", f"one Invoke() under -icount, {where}")
    return DeviceFigures(True, None, latency, arena, stack, count, m)
