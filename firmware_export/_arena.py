"""How many bytes to add to the measured tensor arena for CMSIS-NN kernels on the target core.

The arena is measured on this host with the real TFLite Micro interpreter, which runs the
*reference* kernels. A Cortex-M build with ``OPTIMIZED_KERNEL_DIR=cmsis_nn`` swaps in CMSIS-NN
kernels that ask for scratch buffers in the arena (``RequestScratchBufferInArena`` in their
Prepare). TFLite Micro plans a scratch buffer like a tensor that lives only while its op runs,
so the extra arena is at most the largest single request, plus any persistent buffers.

The request of each op is computed here with the formulas of CMSIS-NN's ``*_get_buffer_size``
functions (ARM-software/CMSIS-NN, ``Source/*/arm_*_get_buffer_sizes_s8.c``, 2024-2026):

* CONV_2D (s8/s16): 1x1 with stride 1 and no padding needs none; otherwise the im2col buffer,
  DSP: ``2 * align4(kh*kw*cin) * 2`` bytes; MVE (Helium): ``4 * align16(kh*kw*cin)`` bytes.
* DEPTHWISE_CONV_2D with one output channel per input channel: DSP ``cin*kh*kw*2`` bytes
  (none for 3x3 with padding <= 1); MVE ``4*124*kh*kw`` bytes. Other depth multipliers: none.
* AVERAGE_POOL_2D: ``cin * 4`` bytes. FULLY_CONNECTED: none on DSP cores; on MVE cores a
  persistent kernel-sum buffer of ``units * 4`` bytes per layer (summed, not maxed).
* Cores without the DSP extension (Cortex-M0/M0+/M3/M23) run CMSIS-NN's plain C paths that
  need no scratch. Non-Arm cores (e.g. Xtensa with ESP-NN) have their own kernels whose
  buffers are not modelled; the DSP figures are used for them as a stand-in.

A fixed :data:`FIXED_MARGIN` is added on top for the larger per-op state (OpData) of the
optimised kernels and allocator alignment on the device. The host measurement uses 64-bit
pointers, so a 32-bit build already needs a little less than measured: that difference is
further headroom, not counted in the margin.

:func:`choose_arena` picks the bundle's ``kTensorArenaSize``: where a device runner for the core is
available (:mod:`search.device_runner`), the smallest arena in which ``AllocateTensors()`` succeeds
with the device's own TFLM + CMSIS-NN kernels in QEMU, rounded up to 16 B and checked to allocate
with exactly that size; otherwise the host measurement + the margin above. The bundle's README and
metadata.json say which.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search._lazy import require
from search.errors import ExportError, MeasurementError

log = logging.getLogger(__name__)

_SCHEMA = "tflite_micro.tensorflow.lite.micro.python.schema_py_generated"

#: Bytes added to every arena besides the scratch buffers (OpData of optimised kernels, alignment).
FIXED_MARGIN = 1024

_MVE_CORES = ("cortex-m52", "cortex-m55", "cortex-m85")
_NO_DSP_CORES = ("cortex-m0", "cortex-m0plus", "cortex-m0+", "cortex-m1", "cortex-m3", "cortex-m23")


@dataclass(frozen=True)
class ArenaMargin:
    """The margin and where it comes from, for model_settings.h, the README and metadata.json."""

    core_class: str  # "mve", "dsp", "plain-c" or "dsp-proxy"
    max_scratch_bytes: int
    max_scratch_op: str
    persistent_bytes: int
    fixed_bytes: int

    @property
    def total(self) -> int:
        return round_up(self.max_scratch_bytes + self.persistent_bytes + self.fixed_bytes, 16)

    def explain(self) -> str:
        where = f" ({self.max_scratch_op})" if self.max_scratch_op else ""
        return (
            f"{self.max_scratch_bytes} B largest CMSIS-NN scratch buffer{where} + {self.persistent_bytes} B "
            f"persistent kernel buffers + {self.fixed_bytes} B fixed, for a {self.core_class} core"
        )


def round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def core_class(core: str | None) -> str:
    """``"mve"``, ``"dsp"``, ``"plain-c"`` or ``"dsp-proxy"`` (non-Arm core) for a target's core name."""
    name = (core or "").lower()
    if name in _MVE_CORES:
        return "mve"
    if name in _NO_DSP_CORES:
        return "plain-c"
    if name.startswith("cortex-m"):
        return "dsp"
    return "dsp-proxy"


def cmsis_nn_margin(model: bytes, core: str | None) -> ArenaMargin:
    """The arena margin CMSIS-NN kernels need for ``model`` on ``core`` (see the module docstring)."""
    cls = core_class(core)
    best, best_op, persistent = 0, "", 0
    for op in _operators(model):
        scratch, keep = _op_buffers(op, cls)
        persistent += keep
        if scratch > best:
            best, best_op = scratch, f"{op['name']} #{op['index']}"
    return ArenaMargin(cls, best, best_op, persistent, FIXED_MARGIN)


def _op_buffers(op: dict[str, Any], cls: str) -> tuple[int, int]:
    """(scratch bytes, persistent bytes) of one operator."""
    if cls == "plain-c" or op["dtype"] not in ("INT8", "INT16"):
        return 0, 0
    mve = cls == "mve"
    name, in_shape, w_shape, out_shape = op["name"], op["input"], op["filter"], op["output"]
    if name == "CONV_2D" and len(in_shape) == 4 and len(w_shape) == 4:
        _, kh, kw, cin = w_shape
        if kh == 1 and kw == 1 and op["stride"] == (1, 1) and op["padding"] == (0, 0):
            return 0, 0
        cols = kh * kw * cin
        return (4 * round_up(cols, 16) if mve else 4 * round_up(cols, 4)), 0
    if name == "DEPTHWISE_CONV_2D" and len(in_shape) == 4 and len(w_shape) == 4:
        _, kh, kw, _ = w_shape
        cin, cout = in_shape[3], out_shape[3] if len(out_shape) == 4 else 0
        if cin != cout or op["dilation"] != (1, 1):
            return 0, 0
        if mve:
            return 4 * 124 * kh * kw, 0
        if kh == 3 and kw == 3 and max(op["padding"]) <= 1:
            return 0, 0
        return cin * kh * kw * 2, 0
    if name == "AVERAGE_POOL_2D" and len(in_shape) == 4:
        return in_shape[3] * 4, 0
    if name == "FULLY_CONNECTED" and mve and len(w_shape) >= 1:
        return 0, w_shape[0] * 4
    return 0, 0


def _decode(model: bytes) -> tuple[Any, Any]:
    """The schema module and the decoded ``ModelT`` of ``model``."""
    schema = require(_SCHEMA)
    try:
        return schema, schema.ModelT.InitFromObj(schema.Model.GetRootAs(model, 0))
    except Exception as exc:  # flatbuffers raises bare struct/index errors on corrupt files
        raise ExportError(f"cannot decode the .tflite flatbuffer: {type(exc).__name__}: {exc}") from None


def tensor_type_names(model: bytes) -> set[str]:
    """TFLite type names (``"INT8"``, ``"FLOAT16"``, ...) of every tensor in every subgraph."""
    schema, m = _decode(model)
    names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    return {names.get(t.type, f"type{t.type}") for sg in m.subgraphs or [] for t in sg.tensors or []}


def _operators(model: bytes) -> list[dict[str, Any]]:
    """Per-op name, main input dtype and shapes, stride, dilation and padding of the main subgraph."""
    schema, m = _decode(model)
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    sg = m.subgraphs[0]
    tensors = list(sg.tensors or [])

    def shape(i: int) -> tuple[int, ...]:
        if i < 0 or tensors[i].shape is None:
            return ()
        return tuple(int(d) for d in tensors[i].shape)

    ops = []
    for index, operator in enumerate(sg.operators or []):
        code = m.operatorCodes[operator.opcodeIndex]
        name = op_names.get(max(int(code.builtinCode), int(code.deprecatedBuiltinCode)), "?")
        ins = list(operator.inputs if operator.inputs is not None else [])
        outs = list(operator.outputs if operator.outputs is not None else [])
        opts = operator.builtinOptions
        stride = (int(getattr(opts, "strideH", 1) or 1), int(getattr(opts, "strideW", 1) or 1))
        dilation = (int(getattr(opts, "dilationHFactor", 1) or 1), int(getattr(opts, "dilationWFactor", 1) or 1))
        in_shape = shape(ins[0]) if ins else ()
        w_shape = shape(ins[1]) if len(ins) > 1 else ()
        out_shape = shape(outs[0]) if outs else ()
        same = getattr(opts, "padding", 1) == schema.Padding.SAME
        padding = (0, 0)
        if same and len(in_shape) == 4 and len(out_shape) == 4 and len(w_shape) == 4:
            padding = (
                _same_pad(in_shape[1], out_shape[1], w_shape[1], stride[0], dilation[0]),
                _same_pad(in_shape[2], out_shape[2], w_shape[2], stride[1], dilation[1]),
            )
        ops.append(
            {
                "index": index,
                "name": name,
                "dtype": type_names.get(tensors[ins[0]].type, "?") if ins and ins[0] >= 0 else "?",
                "input": in_shape,
                "filter": w_shape,
                "output": out_shape,
                "stride": stride,
                "dilation": dilation,
                "padding": padding,
            }
        )
    return ops


def _same_pad(size_in: int, size_out: int, kernel: int, stride: int, dilation: int) -> int:
    effective = (kernel - 1) * dilation + 1
    return max((size_out - 1) * stride + effective - size_in, 0) // 2


# ---- kTensorArenaSize: from the device runner when there is one, else host + margin ----

#: Where ``kTensorArenaSize`` came from, as the bundle's README and metadata say it.
DEVICE_SOURCE_TEXT = "measured on the device's TFLM + CMSIS-NN code in QEMU"
HOST_SOURCE_TEXT = "host reference kernels + CMSIS-NN margin estimate"


@dataclass(frozen=True)
class ArenaChoice:
    """``kTensorArenaSize`` and where it came from (``"device"`` or ``"host"``)."""

    size: int
    source: str  # "device" or "host"
    host_size: int  # host-measured arena + CMSIS-NN margin, rounded up to 16 (what the host path states)
    device: dict[str, Any] | None  # runner core, board, arena_min, check result (device source only)
    fallback_reason: str | None  # why the device was not used (host source only)

    @property
    def text(self) -> str:
        return DEVICE_SOURCE_TEXT if self.source == "device" else HOST_SOURCE_TEXT

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "source_text": self.text,
            "host_estimate_bytes": self.host_size,
            "device": self.device,
            "device_not_used_because": self.fallback_reason,
        }


def choose_arena(
    model: bytes, core: str, host_size: int, tree: Path | str | None = None, cache_dir: Path | None = None
) -> ArenaChoice:
    """``kTensorArenaSize`` for ``model`` on ``core``: the device runner's bisected minimum when it can.

    With a device runner for ``core`` here (a CMSIS-NN tree in ``tree`` or $TINYFRONT_TFLM_DIR,
    ``arm-none-eabi-g++`` and QEMU), the model is allocated with the device's own kernels: the
    smallest arena that allocates, rounded up to 16 B, becomes the size, after a second run has
    checked that exactly that size allocates. Otherwise (or when any of that fails, with the
    reason kept) the size is ``host_size``: the host-measured arena + the CMSIS-NN margin.
    """
    from search.cpi_model import RUNNER_FOR_CORE
    from search.device_runner import run_on_device, runner_available

    def host(reason: str) -> ArenaChoice:
        log.info("kTensorArenaSize from the host measurement + margin: %s", reason)
        return ArenaChoice(host_size, "host", host_size, None, reason)

    runner_core = RUNNER_FOR_CORE.get((core or "").lower())
    if runner_core is None:
        return host(f"no device runner emulates {core}")
    if not runner_available(runner_core, tree):
        return host(
            f"no device runner here for {runner_core} (needs a CMSIS-NN TFLite Micro tree in $TINYFRONT_TFLM_DIR "
            "or --tflm-dir, arm-none-eabi-g++ and qemu-system-arm)"
        )
    missing = _ops_outside_runner(model)
    if missing:
        return host(f"the device runner does not register {', '.join(missing)}")
    try:
        first = run_on_device(model, runner_core, tree=tree, cache_dir=cache_dir)
        if not first.allocated or first.arena_min is None:
            return host(f"AllocateTensors() failed on the {runner_core} device runner: {first.error}")
        size = round_up(first.arena_min, 16)
        check = run_on_device(model, runner_core, first.input, tree=tree, cache_dir=cache_dir, check_arena=size)
    except MeasurementError as exc:
        return host(str(exc))
    if check.arena_check is not True:
        return host(f"exactly {size} B (the bisected minimum {first.arena_min} B rounded up to 16) did not allocate")
    device = {
        "runner_core": runner_core,
        "board": first.board,
        "optimisation": first.optimisation,
        "arena_min_bytes": first.arena_min,
        "arena_used_bytes": first.arena_used,
        "check_arena_bytes": size,
        "allocates_with_exactly_stated": True,
    }
    return ArenaChoice(size, "device", host_size, device, None)


def _ops_outside_runner(model: bytes) -> list[str]:
    from firmware_export.device.runner import RUNNER_OPS

    return sorted({op["name"] for op in _operators(model)} - set(RUNNER_OPS))
