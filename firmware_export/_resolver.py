"""The bundle's op resolver: one registration per operator, type-specific where TFLite Micro offers one.

``resolver.AddFullyConnected()`` registers ``Register_FULLY_CONNECTED()``, whose CMSIS-NN ``Eval``
dispatches on the tensor types and so links the int4, int8 and int16 kernels (and the float
reference one). ``resolver.AddFullyConnected(tflite::Register_FULLY_CONNECTED_INT8())`` links
only the int8 path: the linker drops the rest (``--gc-sections``). Registering the variants the
model's types need cut the MLPerf Tiny KWS image by 28.8 KB on Cortex-M4 and still ran bit-exact
(issue 9).

The variants are the ones ``tensorflow/lite/micro/kernels/*.h`` declare (tflite-micro
``90b983c2``): with ``CMSIS_NN`` defined they are the CMSIS-NN kernels' own entry points
(``kernels/cmsis_nn/*.cc``); without it (host, reference kernels) the headers define them inline
as the generic registration, so the same header compiles in both trees. A variant is used only
when *every* operator of that kind in the model has exactly the types it accepts; a float32 or
mixed-type graph gets the generic registration. Variants whose ``Eval`` tinyfront has not read
(BATCH_MATMUL, SVDF, TRANSPOSE_CONV, UNIDIRECTIONAL_SEQUENCE_LSTM) stay generic.

ESP32-S3 (Xtensa) builds use esp-tflite-micro with ESP-NN, whose set of type-specific entry
points tinyfront cannot check: they get the generic registrations.
"""

from __future__ import annotations

from dataclasses import dataclass

from search.errors import ExportError, MeasurementError
from search.tflite_graph import OperatorTensors, read_operators, resolver_method_name

_I8, _I16, _I4 = "INT8", "INT16", "INT4"

#: Operators for which tinyfront picks type-specific variants (see :func:`_variant`).
_WITH_VARIANTS = (
    "FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D", "SOFTMAX", "ADD", "MUL",
    "MAXIMUM", "MINIMUM", "PAD", "TRANSPOSE",
)  # fmt: skip

#: Headers to include for variants that micro_mutable_op_resolver.h does not pull in itself.
_EXTRA_HEADERS = {
    "PAD": "tensorflow/lite/micro/kernels/pad.h",
    "TRANSPOSE": "tensorflow/lite/micro/kernels/transpose.h",
}


@dataclass(frozen=True)
class Registration:
    """How one operator is registered: the resolver method and, if type-specific, the kernel variant."""

    op: str
    method: str
    variant: str | None  # e.g. "Register_FULLY_CONNECTED_INT8"; None: the method's generic default
    types: str  # the types it was chosen for, e.g. "INT8 in, INT8 weights, INT8 out"

    @property
    def call(self) -> str:
        """The C++ call, e.g. ``AddConv2D(tflite::Register_CONV_2D_INT8())``."""
        return f"{self.method}(tflite::{self.variant}())" if self.variant else f"{self.method}()"


def _types(node: OperatorTensors) -> tuple[str, str, str]:
    first = node.inputs[0] if node.inputs else None
    second = node.inputs[1] if len(node.inputs) > 1 else None
    out = node.outputs[0] if node.outputs else None
    return (first.type if first else "-", second.type if second else "-", out.type if out else "-")


def _variant(node: OperatorTensors) -> str | None:
    """The type-specific kernel variant suffix for one operator, or None for the generic one."""
    x, w, y = _types(node)
    op = node.op
    if op in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D"):
        return {(_I8, _I8, _I8): "INT8", (_I16, _I8, _I16): "INT16", (_I8, _I4, _I8): "INT4"}.get((x, w, y))
    if op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        return {(_I8, _I8): "INT8", (_I16, _I16): "INT16"}.get((x, y))
    if op == "SOFTMAX":
        return {(_I8, _I8): "INT8", (_I8, _I16): "INT8_INT16", (_I16, _I16): "INT16"}.get((x, y))
    if op == "ADD" and x == w == y:
        return {_I8: "INT8", _I16: "INT16"}.get(x)
    if op in ("MUL", "MAXIMUM", "MINIMUM") and x == w == y == _I8:
        return "INT8"
    if op in ("PAD", "TRANSPOSE") and x == y == _I8:
        return "INT8"
    return None


def _describe(node: OperatorTensors) -> str:
    x, w, y = _types(node)
    middle = f", {w} weights" if node.op in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D") else ""
    return f"{x} in{middle}, {y} out"


def op_registrations(model: bytes, core: str | None) -> list[Registration]:
    """One :class:`Registration` per operator kind of ``model``, in first-use order."""
    try:
        nodes = read_operators(model)
    except MeasurementError as exc:
        raise ExportError(f"model.tflite cannot be read: {exc}") from None
    generic_only = (core or "").lower().startswith("xtensa")
    order: list[str] = []
    variants: dict[str, set[str | None]] = {}
    described: dict[str, set[str]] = {}
    for node in nodes:
        if node.op not in variants:
            order.append(node.op)
            variants[node.op], described[node.op] = set(), set()
        variants[node.op].add(None if generic_only else _variant(node))
        described[node.op].add(_describe(node))
    out = []
    for op in order:
        try:
            method = resolver_method_name(op)
        except MeasurementError as exc:
            raise ExportError(f"cannot export to TFLite Micro: {exc}") from None
        kinds = variants[op]
        suffix = next(iter(kinds)) if len(kinds) == 1 else None
        variant = f"Register_{op}_{suffix}" if suffix else None
        out.append(Registration(op, method, variant, "; ".join(sorted(described[op]))))
    return out


def resolver_values(registrations: list[Registration]) -> dict[str, object]:
    """The values of ``templates/tflm/model_op_resolver.h`` (except ``version``)."""
    headers = sorted({_EXTRA_HEADERS[r.op] for r in registrations if r.variant and r.op in _EXTRA_HEADERS})
    calls = []
    for r in registrations:
        kind = "type-specific kernel" if r.variant else "generic kernel" if r.op in _WITH_VARIANTS else "its kernel"
        calls.append(f"  // {r.op}: {r.types} -> {kind}\n  TF_LITE_ENSURE_STATUS(resolver.{r.call});")
    return {
        "op_list": ", ".join(r.op for r in registrations),
        "num_ops": len(registrations),
        "kernel_includes": "".join(f'#include "{h}"\n' for h in headers),
        "register_calls": "\n".join(calls),
    }
