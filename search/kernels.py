"""Can the device's own kernels run this .tflite? A static check, without building anything.

The ``tflite-micro`` Python interpreter runs TFLite Micro's *reference* kernels. A Cortex-M
product links the CMSIS-NN kernels instead (``OPTIMIZED_KERNEL_DIR=cmsis_nn``), whose ``Prepare``
refuses some type and quantisation combinations the reference kernels accept: the model then
fails ``AllocateTensors()`` on the board although it ran on the host. This module walks the
operators of a converted model and names each one those kernels refuse, with the kernel's reason
and source file.

The rules are read from the ``Prepare`` (and type-dispatching ``Eval``) functions of
``tensorflow/lite/micro/kernels/cmsis_nn/*.cc`` at tensorflow/tflite-micro commit
:data:`TFLM_COMMIT` with CMSIS-NN :data:`CMSIS_NN_COMMIT`. Only ``TF_LITE_ENSURE`` failures and
unsupported-type branches are modelled (definite refusals); ops CMSIS-NN does not replace run the
reference kernels on the board too, so the host interpreter already covers them.

Which kernels a core runs (see :func:`kernel_set`):

* ``cortex-m*``: CMSIS-NN (checked here). Cores without DSP (M0/M0+/M3/M23) run CMSIS-NN's plain C
  paths, which have the same ``Prepare`` checks.
* ``xtensa-*`` (ESP32-S3): Espressif's esp-tflite-micro with ESP-NN kernels. **Not checked**:
  tinyfront has no ESP-NN tree to read; the assumption is that ESP-NN accepts what the reference
  kernels accept (it falls back to them for the types it does not optimise), which is unverified.
* anything else: the reference kernels, which the host interpreter runs: nothing more to check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from search.tflite_graph import OperatorTensors, OpTensor, read_operators

__all__ = ["CMSIS_NN_COMMIT", "TFLM_COMMIT", "KernelSet", "device_kernel_problems", "kernel_set"]

#: The tflite-micro and CMSIS-NN commits the rules below were read from.
TFLM_COMMIT = "90b983c2b3f1480642e040bbd2ddb37b998f3424"
CMSIS_NN_COMMIT = "4ab83cc3"


@dataclass(frozen=True)
class KernelSet:
    """The kernel library a core runs and whether tinyfront can check a model against it."""

    name: str
    checked: bool
    note: str


def kernel_set(core: str | None) -> KernelSet:
    """The kernels TFLite Micro uses on ``core`` (a target's ``core`` from targets.toml)."""
    name = (core or "").lower()
    if name.startswith("cortex-m"):
        return KernelSet(
            "CMSIS-NN",
            True,
            f"CMSIS-NN kernels of tflite-micro {TFLM_COMMIT[:8]} (CMSIS-NN {CMSIS_NN_COMMIT}), Prepare checks "
            "modelled statically",
        )
    if name.startswith("xtensa"):
        return KernelSet(
            "ESP-NN",
            False,
            "ESP-NN (esp-tflite-micro) kernels: not checked by tinyfront; assumed to accept what TFLite Micro's "
            "reference kernels accept (unverified)",
        )
    return KernelSet("reference", True, "TFLite Micro reference kernels, as run by the host interpreter")


_FLOAT, _I8, _I16, _I4 = "FLOAT32", "INT8", "INT16", "INT4"


def _types(op: OperatorTensors) -> tuple[str, str, str]:
    """(input, weights, output) type names; ``-`` where the operator has none."""
    first = op.inputs[0] if op.inputs else None
    weights = op.inputs[1] if len(op.inputs) > 1 else None
    out = op.outputs[0] if op.outputs else None
    return (first.type if first else "-", weights.type if weights else "-", out.type if out else "-")


def _zp(t: OpTensor | None) -> int:
    return t.zero_points[0] if t is not None and t.zero_points else 0


def _weighted(op: OperatorTensors, src: str) -> list[str]:
    """Type rules shared by CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED (their Prepare)."""
    x, w, y = _types(op)
    if x != y:
        return [f"input type {x} differs from output type {y} (TF_LITE_ENSURE_EQ in {src})"]
    if x not in (_FLOAT, _I16, _I8):
        return [f"input type {x} is not supported, only FLOAT32, INT16 or INT8 ({src})"]
    if not ((x == _FLOAT and w == _FLOAT) or (x == _I16 and w == _I8) or (x == _I8 and w in (_I4, _I8))):
        return [f"{x} input with {w} weights is a hybrid model, not supported on TFLite Micro ({src})"]
    problems = []
    if x == _I16 and (_zp(op.inputs[0]) != 0 or _zp(op.outputs[0]) != 0):
        problems.append(f"int16 input and output need zero point 0 ({src})")
    return problems


def _fully_connected(op: OperatorTensors) -> list[str]:
    src = "kernels/cmsis_nn/fully_connected.cc"
    problems = _weighted(op, src)
    if problems:
        return problems
    x, w, _ = _types(op)
    weights = op.inputs[1]
    if weights is not None and weights.scales > 1 and not (x == _I8 and w != _I4):
        problems.append(
            f"{w} weights quantised per channel ({weights.scales} scales) with {x} input: per-channel "
            f"quantisation is only supported for int8 input with int8 weights ({src}, Prepare); quantise the "
            "dense weights per tensor"
        )
    return problems


def _conv(op: OperatorTensors) -> list[str]:
    src = "kernels/cmsis_nn/conv.cc"
    problems = _weighted(op, src)
    x, w, y = (op.inputs[0], op.inputs[1] if len(op.inputs) > 1 else None, op.outputs[0] if op.outputs else None)
    if not problems and x is not None and w is not None and y is not None:
        if not (len(x.shape) == len(w.shape) == len(y.shape) == 4):
            problems.append(f"input, filter and output must have rank 4 ({src})")
        elif w.shape[3] <= 0 or x.shape[3] % w.shape[3] != 0:
            problems.append(f"input channels {x.shape[3]} are not a multiple of filter channels {w.shape[3]} ({src})")
    return problems


def _depthwise(op: OperatorTensors) -> list[str]:
    src = "kernels/cmsis_nn/depthwise_conv.cc"
    problems = _weighted(op, src)
    x, w = op.inputs[0], op.inputs[1] if len(op.inputs) > 1 else None
    if problems or x is None or w is None or x.type not in (_I8, _I16):
        return problems
    channels = w.shape[3] if len(w.shape) == 4 else -1
    if w.scales == 0:
        problems.append(f"quantised depthwise filter without affine quantisation ({src})")
    elif w.scales not in (1, channels):
        problems.append(f"filter has {w.scales} scales; expected 1 or one per output channel ({channels}) ({src})")
    elif len(w.zero_points) != w.scales:
        problems.append(f"filter has {w.scales} scales but {len(w.zero_points)} zero points ({src})")
    return problems


def _same_type(types: tuple[str, ...], src: str) -> Callable[[OperatorTensors], list[str]]:
    def rule(op: OperatorTensors) -> list[str]:
        x, _, y = _types(op)
        if x not in types:
            return [f"input type {x} is not supported, only {', '.join(types)} ({src})"]
        if y != "-" and y != x:
            return [f"input type {x} differs from output type {y} ({src})"]
        return []

    return rule


def _softmax(op: OperatorTensors) -> list[str]:
    src = "kernels/cmsis_nn/softmax.cc"
    x, _, y = _types(op)
    if not (x == y or (x == _I8 and y == _I16)):
        return [f"input type {x} with output type {y} is not supported together ({src})"]
    if x not in (_FLOAT, _I16, _I8):
        return [f"input type {x} is not supported, only FLOAT32, INT16 or INT8 ({src})"]
    return []


def _add(op: OperatorTensors) -> list[str]:
    src = "kernels/cmsis_nn/add.cc"
    types = [t.type if t else "-" for t in op.inputs[:2]]
    y = op.outputs[0].type if op.outputs else "-"
    if len(types) < 2 or types[0] != y or types[0] != types[1]:
        return [f"inputs {', '.join(types)} and output {y} must share one type ({src})"]
    if y not in (_FLOAT, "INT32", _I16, _I8):
        return [f"type {y} is not supported, only FLOAT32, INT32, INT16 or INT8 ({src})"]
    if y == _I16 and any(_zp(t) != 0 for t in (*op.inputs[:2], op.outputs[0])):
        return [f"int16 inputs and output need zero point 0 ({src})"]
    return []


def _transpose(op: OperatorTensors) -> list[str]:
    src = "kernels/cmsis_nn/transpose.cc"
    problems = _same_type((_FLOAT, _I8, _I16), src)(op)
    x = op.inputs[0] if op.inputs else None
    if x is not None and len(x.shape) > 4:
        problems.append(f"input rank {len(x.shape)} > 4 is not supported ({src})")
    return problems


#: The ops CMSIS-NN replaces, with their rule. Other ops run the reference kernels on the board too.
_CMSIS_NN_RULES: dict[str, Callable[[OperatorTensors], list[str]]] = {
    "FULLY_CONNECTED": _fully_connected,
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _depthwise,
    "AVERAGE_POOL_2D": _same_type((_FLOAT, _I8, _I16), "kernels/cmsis_nn/pooling.cc"),
    "MAX_POOL_2D": _same_type((_FLOAT, _I8, _I16), "kernels/cmsis_nn/pooling.cc"),
    "SOFTMAX": _softmax,
    "ADD": _add,
    "MUL": _same_type((_I8, _I16, "INT32", _FLOAT), "kernels/cmsis_nn/mul.cc"),
    "PAD": _same_type((_FLOAT, _I8, _I16, "INT32"), "kernels/cmsis_nn/pad.cc"),
    "PADV2": _same_type((_FLOAT, _I8, _I16, "INT32"), "kernels/cmsis_nn/pad.cc"),
    "TRANSPOSE": _transpose,
    "MAXIMUM": _same_type((_I8, _FLOAT, _I16, "INT32", "INT64"), "kernels/cmsis_nn/maximum_minimum.cc"),
    "MINIMUM": _same_type((_I8, _FLOAT, _I16, "INT32", "INT64"), "kernels/cmsis_nn/maximum_minimum.cc"),
}


def device_kernel_problems(model_bytes: bytes, core: str | None) -> list[str]:
    """One line per operator of ``model_bytes`` that the kernels of ``core`` refuse (empty: it runs).

    Each line names the op, its index, its (input, weights, output) types, the kernel's reason
    and its source file. Raises :class:`~search.errors.MeasurementError` for bytes that are not a
    .tflite model. Cores whose kernels tinyfront cannot check (ESP-NN) give an empty list: see
    :func:`kernel_set` for what is assumed.
    """
    kernels = kernel_set(core)
    if kernels.name != "CMSIS-NN":
        read_operators(model_bytes)  # still refuse what is not a model
        return []
    problems = []
    for op in read_operators(model_bytes):
        rule = _CMSIS_NN_RULES.get(op.op)
        if rule is None:
            continue
        x, w, y = _types(op)
        weights = f", {w} weights" if op.op in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D") else ""
        for reason in rule(op):
            problems.append(f"{op.op} #{op.index} ({x} in{weights}, {y} out): {reason}")
    return problems
