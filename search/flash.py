"""Flash a TFLite Micro deployment needs: the model array (measured) plus runtime code (estimated).

The model is exported as ``alignas(16) const unsigned char g_model_data[]`` plus an
``unsigned int g_model_data_len``; its size is exact. The runtime code size is an ESTIMATE for an
arm-none-eabi-gcc ``-Os`` Cortex-M build of current TFLite Micro with CMSIS-NN kernels:

- :data:`TFLM_RUNTIME_BASE_BYTES` (16 KB): MicroInterpreter, MicroAllocator and the greedy memory
  planner, the flatbuffer reader and schema parse functions that get linked, MicroPrintf/DebugLog
  and the op resolver. Public reports put a minimal TFLM runtime at about 20-50 KB of flash
  depending on the registered operators (e.g. the applied-ee.github.io TFLM guide); base + the
  per-op figures below reproduce that range for 3-10 ops.
- :data:`TFLM_OP_CODE_BYTES`: per-kernel ``.text`` for the TFLM wrapper plus the CMSIS-NN
  functions it dispatches to (int8 fast paths) and the reference fallback the wrapper keeps for
  other types. These are round figures from the relative complexity of the kernels, not from a
  map file of this project's builds; treat each as +-50% (:data:`RUNTIME_CODE_ERROR_PCT`).
  Unlisted ops use :data:`DEFAULT_OP_CODE_BYTES`.
"""

from __future__ import annotations

from search.figures import Figure
from search.tflite_graph import GraphInfo

TFLM_RUNTIME_BASE_BYTES: int = 16 * 1024

TFLM_OP_CODE_BYTES: dict[str, int] = {
    "CONV_2D": 9 * 1024,
    "DEPTHWISE_CONV_2D": 9 * 1024,
    "FULLY_CONNECTED": 5 * 1024,
    "TRANSPOSE_CONV": 6 * 1024,
    "BATCH_MATMUL": 5 * 1024,
    "AVERAGE_POOL_2D": 3 * 1024,
    "MAX_POOL_2D": 3 * 1024,
    "SOFTMAX": 3 * 1024,
    "LOGISTIC": 2 * 1024,
    "TANH": 2 * 1024,
    "ADD": 4 * 1024,
    "SUB": 3 * 1024,
    "MUL": 3 * 1024,
    "MEAN": 3 * 1024,
    "CONCATENATION": 2 * 1024,
    "PAD": 2 * 1024,
    "QUANTIZE": 2 * 1024,
    "DEQUANTIZE": 1536,
    "RELU": 1024,
    "RELU6": 1024,
    "HARD_SWISH": 2 * 1024,
    "RESHAPE": 512,
    "SQUEEZE": 512,
    "EXPAND_DIMS": 512,
}
DEFAULT_OP_CODE_BYTES: int = 2 * 1024
RUNTIME_CODE_ERROR_PCT: float = 50.0

#: Alignment of the exported model array (TFLite Micro's convention).
MODEL_ALIGNMENT = 16


def c_array_bytes(model_len: int) -> int:
    """Flash taken by ``alignas(16) const unsigned char g_model_data[model_len]`` and its ``unsigned int``
    length: the array padded to the 16-byte alignment of whatever follows, plus 4 bytes."""
    if model_len < 0:
        raise ValueError(f"model_len must be >= 0, got {model_len}")
    padded = -(-model_len // MODEL_ALIGNMENT) * MODEL_ALIGNMENT
    return padded + 4


def runtime_code_bytes(ops: tuple[str, ...] | list[str]) -> int:
    """Estimated TFLM + CMSIS-NN code bytes for a resolver that registers ``ops``."""
    return TFLM_RUNTIME_BASE_BYTES + sum(TFLM_OP_CODE_BYTES.get(op, DEFAULT_OP_CODE_BYTES) for op in set(ops))


def flash_estimate(model: bytes, graph: GraphInfo) -> dict[str, Figure]:
    """Flash in kB: ``model`` (measured C array), ``runtime_code`` (estimated) and ``total`` (estimated)."""
    model_kb = c_array_bytes(len(model)) / 1024
    code_kb = runtime_code_bytes(graph.ops) / 1024
    # The total's absolute error is the runtime code's; express it relative to the total.
    total_err = RUNTIME_CODE_ERROR_PCT * code_kb / (model_kb + code_kb)
    return {
        "model": Figure(round(model_kb, 2), "kB", "measured", "size of the .tflite as an alignas(16) C array"),
        "runtime_code": Figure(
            round(code_kb, 1),
            "kB",
            "estimated",
            f"TFLM runtime {TFLM_RUNTIME_BASE_BYTES // 1024} kB + per-op CMSIS-NN kernel code for {len(graph.ops)} ops",
            error_pct=RUNTIME_CODE_ERROR_PCT,
        ),
        "total": Figure(
            round(model_kb + code_kb, 1),
            "kB",
            "estimated",
            "model array (measured) + runtime code (estimated)",
            error_pct=round(total_err, 1),
        ),
    }
