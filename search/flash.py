"""Flash a TFLite Micro deployment needs: the model array (measured) plus runtime code (estimated).

The model is exported as ``alignas(16) const unsigned char g_model_data[]`` plus an
``unsigned int g_model_data_len``; its size is exact. The rest of the image is estimated from real
``arm-none-eabi-gcc -Os`` links of TFLite Micro + CMSIS-NN (``search/calibration/tflm_code_size.json``,
written by ``python -m search.flash_calibrate``; tree commit, compiler and flags are in the file):

- ``interpreter_bytes``: the linked image of a program that runs the interpreter with no operator
  (MicroInterpreter, allocator, flatbuffer reader, MicroPrintf, newlib-nano printf/memcpy, libgcc,
  the C startup and the probe's ``main``), per core;
- per operator registration variant (``CONV_2D:INT8`` is ``Register_CONV_2D_INT8()``, ``CONV_2D``
  the generic registration that links every type's path) the input sections its link adds; an
  op set costs the size of the UNION of its ops' sections, so code kernels share is counted once.

The resolver is assumed to register, per op, the variant for the model's types (int8 activations:
``_INT8``, int16: ``_INT16``, int8 in / int16 out SOFTMAX: ``_INT8_INT16``; float or mixed: the
generic one), as the exported bundle does. The stated error is the largest residual of this
estimate against real links (``validation`` in the calibration file, see benchmarks/flash_vs_link.py).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from search.errors import MeasurementError
from search.figures import Figure
from search.tflite_graph import GraphInfo, _enum_names, _schema

CALIBRATION_FILE = Path(__file__).parent / "calibration" / "tflm_code_size.json"

#: Calibrated core used for each target core that has no links of its own. Cortex-M85 runs the
#: same Helium (MVE) CMSIS-NN paths as the M55; ESP32-S3 (Xtensa LX7, ESP-NN kernels) is a
#: different ISA and kernel set: the Cortex-M4 figures stand in and the added error says so.
#: Any other Cortex-M core without links falls back to the Cortex-M4 figures.
CORE_ALIASES: dict[str, str] = {"cortex-m85": "cortex-m55", "xtensa-lx7": "cortex-m4"}
#: Error (percent of the runtime code) added when another core's figures stand in (a judgement, not
#: measured: same ISA family and kernels 5 %, other Cortex-M 15 %, other ISA and kernels 30 %).
STAND_IN_ERROR_PCT: dict[str, float] = {"cortex-m85": 5.0, "xtensa-lx7": 30.0}
OTHER_CORTEX_M_ERROR_PCT = 15.0
#: Error stated for a calibrated core before benchmarks/flash_vs_link.py recorded residuals for it.
UNVALIDATED_ERROR_PCT = 10.0

#: Type-specific registrations (``Register_<OP>_<TYPE>()``) the CMSIS-NN tree defines, from its
#: tensorflow/lite/micro/kernels/*.h (``#if defined(CMSIS_NN)`` branches).
TYPE_VARIANTS: dict[str, tuple[str, ...]] = {
    "CONV_2D": ("INT8", "INT16"),
    "DEPTHWISE_CONV_2D": ("INT8", "INT16"),
    "FULLY_CONNECTED": ("INT8", "INT16"),
    "AVERAGE_POOL_2D": ("INT8", "INT16"),
    "MAX_POOL_2D": ("INT8", "INT16"),
    "SOFTMAX": ("INT8", "INT16"),
    "ADD": ("INT8", "INT16"),
    "BATCH_MATMUL": ("INT8", "INT16"),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": ("INT8", "INT16"),
    "MUL": ("INT8",),
    "PAD": ("INT8",),
    "TRANSPOSE_CONV": ("INT8",),
    "TRANSPOSE": ("INT8",),
    "MAXIMUM": ("INT8",),
    "MINIMUM": ("INT8",),
    "SVDF": ("INT8",),
}

#: Alignment of the exported model array (TFLite Micro's convention).
MODEL_ALIGNMENT = 16


def c_array_bytes(model_len: int) -> int:
    """Flash taken by ``alignas(16) const unsigned char g_model_data[model_len]`` and its ``unsigned int``
    length: the array padded to the 16-byte alignment of whatever follows, plus 4 bytes."""
    if model_len < 0:
        raise ValueError(f"model_len must be >= 0, got {model_len}")
    padded = -(-model_len // MODEL_ALIGNMENT) * MODEL_ALIGNMENT
    return padded + 4


@cache
def calibration() -> dict[str, Any]:
    """The calibration file's contents (package data)."""
    try:
        data: dict[str, Any] = json.loads(CALIBRATION_FILE.read_text())
    except (OSError, ValueError) as exc:
        raise MeasurementError(f"cannot read the flash calibration {CALIBRATION_FILE}: {exc}") from None
    return data


def calibrated_core(core: str) -> str:
    """The calibrated core whose figures stand for ``core`` (MeasurementError when none can)."""
    cores = calibration()["cores"]
    name = core if core in cores else CORE_ALIASES.get(core, "")
    if name not in cores:
        name = "cortex-m4" if core.startswith("cortex-m") and "cortex-m4" in cores else ""
    if not name:
        raise MeasurementError(f"no flash calibration for core {core!r} (calibrated: {', '.join(sorted(cores))})")
    return name


def registration_keys(model: bytes) -> tuple[str, ...]:
    """The resolver registration of each op of ``model``: ``OP`` or ``OP:VARIANT`` (first-seen order)."""
    model = bytes(model)
    if model[4:8] != b"TFL3":
        found = model[4:8]
        raise MeasurementError(f"not a TFLite flatbuffer: expected file identifier b'TFL3' at byte 4, found {found!r}")
    schema = _schema()
    try:
        m = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model, 0))
    except Exception as exc:  # flatbuffers raises bare struct/index errors on corrupt files
        raise MeasurementError(f"not a TFLite flatbuffer: cannot decode it ({type(exc).__name__}: {exc})") from None
    op_names = _enum_names("BuiltinOperator")
    type_names = _enum_names("TensorType")
    seen: dict[str, tuple[set[str], set[str]]] = {}
    for sg in m.subgraphs or []:
        tensors = sg.tensors or []
        for operator in sg.operators or []:
            code = m.operatorCodes[operator.opcodeIndex]
            op = op_names.get(max(int(code.builtinCode), int(code.deprecatedBuiltinCode)), "?")
            if op == "CUSTOM":
                op = "CUSTOM:" + (code.customCode.decode() if code.customCode else "?")
            ins = [i for i in (operator.inputs if operator.inputs is not None else []) if i >= 0]
            outs = [i for i in (operator.outputs if operator.outputs is not None else []) if i >= 0]
            in_types, out_types = seen.setdefault(op, (set(), set()))
            in_types.add(type_names.get(tensors[ins[0]].type, "?") if ins else "?")
            out_types.add(type_names.get(tensors[outs[0]].type, "?") if outs else "?")
    return tuple(variant_key(op, ins, outs) for op, (ins, outs) in seen.items())


def variant_key(op: str, in_types: set[str], out_types: set[str]) -> str:
    """The registration of ``op`` whose instances read ``in_types`` and write ``out_types``: ``OP:INT8`` /
    ``OP:INT16`` / ``SOFTMAX:INT8_INT16`` when every instance has that type and the CMSIS-NN tree has
    that variant (:data:`TYPE_VARIANTS`), else the generic ``OP``."""
    variants = TYPE_VARIANTS.get(op, ())
    if len(in_types) != 1 or len(out_types) != 1:
        return op
    (t_in,), (t_out,) = in_types, out_types
    if op == "SOFTMAX" and (t_in, t_out) == ("INT8", "INT16"):
        return "SOFTMAX:INT8_INT16"
    return f"{op}:{t_in}" if t_in == t_out and t_in in variants else op


def _op_entry(ops: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The calibrated registration for ``key``, falling back to the generic one (no such variant)."""
    return ops.get(key) or ops.get(key.split(":")[0])


def runtime_code_bytes(keys: tuple[str, ...] | list[str], core: str = "cortex-m4") -> tuple[int, list[str]]:
    """Estimated flash of everything but the model array for a resolver registering ``keys`` on ``core``,
    and the keys that have no calibration (each costs the median op delta)."""
    cal = calibration()["cores"][calibrated_core(core)]
    ops: dict[str, Any] = cal["ops"]
    sizes: list[int] = cal["section_sizes"]
    union: set[int] = set()
    missing: list[str] = []
    for key in dict.fromkeys(keys):
        entry = _op_entry(ops, key)
        if entry is None:
            missing.append(key)
        else:
            union.update(entry["sections"])
    deltas = sorted(int(e["delta_bytes"]) for e in ops.values())
    median = deltas[len(deltas) // 2] if deltas else 0
    return int(cal["interpreter_bytes"]) + sum(sizes[i] for i in union) + median * len(missing), missing


def code_error_pct(core: str) -> float:
    """Largest |residual| (percent of the runtime code) of this estimate against real links on the
    calibrated core standing for ``core`` (:data:`UNVALIDATED_ERROR_PCT` before any validation)."""
    cal = calibration()["cores"][calibrated_core(core)]
    residuals = [abs(float(r["code_error_pct"])) for r in cal.get("validation", [])]
    return max(residuals) if residuals else UNVALIDATED_ERROR_PCT


def flash_estimate(model: bytes, graph: GraphInfo, core: str = "cortex-m4") -> dict[str, Figure]:
    """Flash in kB: ``model`` (measured C array), ``runtime_code`` (estimated) and ``total`` (estimated)."""
    model_kb = c_array_bytes(len(model)) / 1024
    keys = registration_keys(model)
    name = calibrated_core(core)
    code, missing = runtime_code_bytes(keys, name)
    code_kb = code / 1024
    error = code_error_pct(core)
    if name != core:
        error += STAND_IN_ERROR_PCT.get(core, OTHER_CORTEX_M_ERROR_PCT)
    cal = calibration()
    stand_in = f" ({name} figures stand in for {core})" if name != core else ""
    uncal = f"; not calibrated: {', '.join(missing)} (median op size each)" if missing else ""
    return {
        "model": Figure(round(model_kb, 2), "kB", "measured", "size of the .tflite as an alignas(16) C array"),
        "runtime_code": Figure(
            round(code_kb, 1),
            "kB",
            "estimated",
            f"arm-none-eabi -Os links of TFLM {cal['tflm_commit'][:8]} + CMSIS-NN on {name}{stand_in}: interpreter, "
            f"newlib-nano, startup + the code of {len(keys)} registrations ({', '.join(keys)}){uncal}",
            error_pct=round(error, 1),
        ),
        "total": Figure(
            round(model_kb + code_kb, 1),
            "kB",
            "estimated",
            "model array (measured) + runtime code (estimated from calibrated links)",
            error_pct=round(error * code_kb / (model_kb + code_kb), 1),
        ),
    }


def static_ram_bytes(keys: tuple[str, ...] | list[str], core: str = "cortex-m4") -> int:
    """.data + .bss outside the tensor arena of a bundle registering ``keys`` on ``core``: the interpreter
    link's, plus each kernel's own static data, plus one resolver slot per op beyond the first (all
    measured by the calibration links)."""
    cal = calibration()["cores"][calibrated_core(core)]
    kernels = 0
    for key in dict.fromkeys(keys):
        entry = _op_entry(cal["ops"], key)
        kernels += int(entry["static_ram_delta"]) if entry else 0
    slots = max(0, len(dict.fromkeys(keys)) - 1)
    return int(cal["static_ram_bytes"]) + kernels + round(float(cal["resolver_slot_bytes"]) * slots)
