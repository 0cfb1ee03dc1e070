"""Read a .tflite flatbuffer into a per-layer summary without importing TensorFlow.

The flatbuffer is decoded with the schema module that the ``tflite-micro`` package ships
(``tflite_micro.tensorflow.lite.micro.python.schema_py_generated``, pure Python on top of the
``flatbuffers`` package; importing it loads tflite_micro's runtime extension but not TensorFlow).

MACs are counted per inference (batch 1): CONV_2D = out_h*out_w*out_c*k_h*k_w*in_c/groups,
DEPTHWISE_CONV_2D = out_h*out_w*out_c*k_h*k_w, FULLY_CONNECTED = in_features*units per output row,
TRANSPOSE_CONV = in_h*in_w*in_c*k_h*k_w*out_c; every other op counts 0.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import cache
from types import ModuleType
from typing import Any

import numpy as np

from search._lazy import require
from search.errors import MeasurementError

_SCHEMA = "tflite_micro.tensorflow.lite.micro.python.schema_py_generated"

#: numpy dtype name and bytes per element of each TFLite TensorType name.
_DTYPES: dict[str, tuple[str, float]] = {
    "FLOAT32": ("float32", 4),
    "FLOAT16": ("float16", 2),
    "FLOAT64": ("float64", 8),
    "INT32": ("int32", 4),
    "UINT8": ("uint8", 1),
    "INT64": ("int64", 8),
    "BOOL": ("bool", 1),
    "INT16": ("int16", 2),
    "INT8": ("int8", 1),
    "UINT64": ("uint64", 8),
    "UINT32": ("uint32", 4),
    "UINT16": ("uint16", 2),
    "INT4": ("int4", 0.5),
    "COMPLEX64": ("complex64", 8),
}

#: Ops whose input 1 is a weight tensor (counted in ``zero_weight_fraction``).
WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL", "SVDF")

#: MicroMutableOpResolver method of every builtin op current TFLite Micro registers
#: (tensorflow/tflite-micro tensorflow/lite/micro/micro_mutable_op_resolver.h, 2025).
_RESOLVER_METHODS: dict[str, str] = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN", "ARG_MAX": "AddArgMax", "ARG_MIN": "AddArgMin",
    "ASSIGN_VARIABLE": "AddAssignVariable", "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_MATMUL": "AddBatchMatMul", "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
    "BROADCAST_ARGS": "AddBroadcastArgs", "BROADCAST_TO": "AddBroadcastTo", "CALL_ONCE": "AddCallOnce",
    "CAST": "AddCast", "CEIL": "AddCeil", "CONCATENATION": "AddConcatenation", "CONV_2D": "AddConv2D",
    "COS": "AddCos", "CUMSUM": "AddCumSum", "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "DEQUANTIZE": "AddDequantize", "DIV": "AddDiv",
    "EMBEDDING_LOOKUP": "AddEmbeddingLookup", "ELU": "AddElu", "EQUAL": "AddEqual", "EXP": "AddExp",
    "EXPAND_DIMS": "AddExpandDims", "FILL": "AddFill", "FLOOR": "AddFloor", "FLOOR_DIV": "AddFloorDiv",
    "FLOOR_MOD": "AddFloorMod", "FULLY_CONNECTED": "AddFullyConnected", "GATHER": "AddGather",
    "GATHER_ND": "AddGatherNd", "GREATER": "AddGreater", "GREATER_EQUAL": "AddGreaterEqual",
    "HARD_SWISH": "AddHardSwish", "IF": "AddIf", "L2_NORMALIZATION": "AddL2Normalization",
    "L2_POOL_2D": "AddL2Pool2D", "LEAKY_RELU": "AddLeakyRelu", "LESS": "AddLess", "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog", "LOGICAL_AND": "AddLogicalAnd", "LOGICAL_NOT": "AddLogicalNot", "LOGICAL_OR": "AddLogicalOr",
    "LOGISTIC": "AddLogistic", "LOG_SOFTMAX": "AddLogSoftmax", "MAXIMUM": "AddMaximum",
    "MAX_POOL_2D": "AddMaxPool2D", "MIRROR_PAD": "AddMirrorPad", "MEAN": "AddMean", "MINIMUM": "AddMinimum",
    "MUL": "AddMul", "NEG": "AddNeg", "NOT_EQUAL": "AddNotEqual", "PACK": "AddPack", "PAD": "AddPad",
    "PADV2": "AddPadV2", "PRELU": "AddPrelu", "QUANTIZE": "AddQuantize", "READ_VARIABLE": "AddReadVariable",
    "REDUCE_MAX": "AddReduceMax", "REDUCE_MIN": "AddReduceMin", "RELU": "AddRelu", "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape", "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor", "REVERSE_V2": "AddReverseV2", "ROUND": "AddRound",
    "RSQRT": "AddRsqrt", "SELECT_V2": "AddSelectV2", "SHAPE": "AddShape", "SIN": "AddSin", "SLICE": "AddSlice",
    "SOFTMAX": "AddSoftmax", "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd", "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit", "SPLIT_V": "AddSplitV", "SQUEEZE": "AddSqueeze", "SQRT": "AddSqrt",
    "SQUARE": "AddSquare", "SQUARED_DIFFERENCE": "AddSquaredDifference", "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub", "SUM": "AddSum", "SVDF": "AddSvdf", "TANH": "AddTanh", "TRANSPOSE_CONV": "AddTransposeConv",
    "TRANSPOSE": "AddTranspose", "UNPACK": "AddUnpack",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM", "VAR_HANDLE": "AddVarHandle",
    "WHILE": "AddWhile", "ZEROS_LIKE": "AddZerosLike",
    "CUSTOM:TFLite_Detection_PostProcess": "AddDetectionPostprocess", "CUSTOM:CIRCULAR_BUFFER": "AddCircularBuffer",
}  # fmt: skip


@dataclass(frozen=True)
class TensorInfo:
    """A model input or output: name, shape, numpy dtype name and per-tensor quantisation."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None
    zero_point: int | None


@dataclass(frozen=True)
class Layer:
    """One operator of the main subgraph with its cost figures."""

    index: int
    op: str
    macs: int
    weight_params: int
    weight_bytes: int
    activation_bytes: int
    output_shape: tuple[int, ...]


@dataclass(frozen=True)
class GraphInfo:
    """What a .tflite file contains: layers, op list, MACs, parameters and sizes."""

    layers: tuple[Layer, ...]
    ops: tuple[str, ...]
    macs: int
    params: int
    weight_bytes: int
    zero_weight_fraction: float
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    model_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@cache
def _schema() -> ModuleType:
    return require(_SCHEMA)


@cache
def _enum_names(enum_name: str) -> dict[int, str]:
    enum = getattr(_schema(), enum_name)
    return {v: k for k, v in vars(enum).items() if not k.startswith("_") and isinstance(v, int)}


def resolver_method_name(op: str) -> str:
    """The ``MicroMutableOpResolver`` method that registers ``op`` (e.g. ``"CONV_2D"`` -> ``"AddConv2D"``)."""
    try:
        return _RESOLVER_METHODS[op]
    except KeyError:
        raise MeasurementError(
            f"op {op} is not supported by TFLite Micro (no MicroMutableOpResolver method registers it)"
        ) from None


def _tensor_dtype(type_code: int) -> tuple[str, float]:
    name = _enum_names("TensorType").get(type_code, f"type{type_code}")
    return _DTYPES.get(name, (name.lower(), 0))


def _shape(tensor: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in tensor.shape) if tensor.shape is not None else ()


def _quant(tensor: Any) -> tuple[float | None, int | None]:
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None, None
    zp = int(q.zeroPoint[0]) if q.zeroPoint is not None and len(q.zeroPoint) else 0
    return float(q.scale[0]), zp


def _buffer_bytes(model: bytes, buffer: Any) -> bytes:
    """Raw bytes of a buffer, inline or (for files written with offsets) at ``offset``."""
    if buffer is None:
        return b""
    if buffer.data is not None and len(buffer.data):
        return bytes(np.asarray(buffer.data, dtype=np.uint8))
    if buffer.offset and buffer.offset > 1 and buffer.size:
        return model[buffer.offset : buffer.offset + buffer.size]
    return b""


def _macs(op: str, inputs: list[Any], out_shape: tuple[int, ...]) -> int:
    if not inputs or len(out_shape) < 2:
        return 0
    per_batch = math.prod(out_shape[1:]) if out_shape[0] > 0 else math.prod(out_shape)
    if op == "CONV_2D" and len(inputs) > 1:
        _, kh, kw, kin = _shape(inputs[1])
        return per_batch * kh * kw * kin
    if op == "DEPTHWISE_CONV_2D" and len(inputs) > 1:
        _, kh, kw, _ = _shape(inputs[1])
        return per_batch * kh * kw
    if op == "FULLY_CONNECTED" and len(inputs) > 1:
        units, in_features = _shape(inputs[1])[-2:]
        rows = math.prod(out_shape[1:-1]) if len(out_shape) > 2 else 1
        return rows * units * in_features
    if op == "TRANSPOSE_CONV" and len(inputs) > 2:
        _, kh, kw, _ = _shape(inputs[1])
        in_shape = _shape(inputs[2])
        return math.prod(in_shape[1:]) * kh * kw * out_shape[-1]
    return 0


#: Largest tensor accepted (bytes): TFLM keeps element counts and byte sizes in 32-bit ints.
MAX_TENSOR_BYTES = 2**31 - 1
#: Tensor types TFLite Micro can hold (``TfLiteTypeSizeOf`` in tensorflow/lite/micro/memory_helpers.cc);
#: the interpreter crashes on others (a VARIANT bias segfaults ``AllocateTensors``).
TFLM_TENSOR_TYPES = frozenset(
    ("FLOAT16", "BFLOAT16", "FLOAT32", "FLOAT64", "INT16", "INT32", "UINT32", "UINT8", "UINT16", "INT8", "INT64",
     "UINT64", "BOOL", "RESOURCE", "COMPLEX64", "COMPLEX128", "INT4")
)  # fmt: skip
#: Fewest inputs each costed op reads, and the rank its input 1 (weights) must have.
_OP_ARITY: dict[str, tuple[int, int]] = {
    "CONV_2D": (2, 4),
    "DEPTHWISE_CONV_2D": (2, 4),
    "TRANSPOSE_CONV": (3, 4),
    "FULLY_CONNECTED": (2, 2),
}


def _index(value: Any, count: int, field: str, *, optional: bool = False) -> int:
    """``value`` as an index into a list of ``count`` items, else a MeasurementError naming ``field``."""
    i = int(value)
    if optional and i == -1:
        return i
    if not 0 <= i < count:
        allowed = f"0..{count - 1}" if count else "none (the list is empty)"
        raise MeasurementError(f"invalid .tflite: {field} is {i}, out of range (allowed: {allowed})")
    return i


def _check_tensor(model_len: int, m: Any, t: Any, where: str) -> None:
    buffers = m.buffers or []
    b = _index(t.buffer, len(buffers), f"{where} buffer index")
    type_name = _enum_names("TensorType").get(int(t.type), f"unknown type code {t.type}")
    if type_name not in TFLM_TENSOR_TYPES:
        raise MeasurementError(
            f"invalid .tflite: {where} has tensor type {type_name}, which TFLite Micro cannot hold "
            f"(allowed: {', '.join(sorted(TFLM_TENSOR_TYPES))})"
        )
    shape = [int(d) for d in (t.shape if t.shape is not None else [])]
    if any(d < 0 for d in shape):
        raise MeasurementError(f"invalid .tflite: {where} shape {shape} has a negative dimension")
    per_element = _tensor_dtype(t.type)[1]
    nbytes = math.prod(shape) * max(per_element, 1)
    if nbytes > MAX_TENSOR_BYTES:
        raise MeasurementError(
            f"invalid .tflite: {where} shape {shape} needs {nbytes:,} B, more than {MAX_TENSOR_BYTES:,} B"
        )
    buf = buffers[b]
    stored = 0
    if buf is not None and buf.data is not None and len(buf.data):
        stored = len(buf.data)
    elif buf is not None and buf.offset and buf.offset > 1:
        stored = int(buf.size or 0)
        if int(buf.offset) + stored > model_len:
            raise MeasurementError(
                f"invalid .tflite: buffer {b} (of {where}) spans bytes {buf.offset}..{int(buf.offset) + stored}, "
                f"past the end of the {model_len:,} B file"
            )
    needed = math.ceil(math.prod(shape) * per_element)
    if stored and per_element and stored < needed:
        raise MeasurementError(
            f"invalid .tflite: {where} shape {shape} needs {needed:,} B of data, buffer {b} holds {stored:,} B"
        )
    q = t.quantization
    if q is None:
        return
    n_scale = len(q.scale) if q.scale is not None else 0
    n_zp = len(q.zeroPoint) if q.zeroPoint is not None else 0
    if n_scale and n_zp and n_scale != n_zp:
        raise MeasurementError(f"invalid .tflite: {where} has {n_scale} quantisation scales but {n_zp} zero points")


def _check_operator(model_len: int, m: Any, sg: Any, k: int, op: Any, where: str) -> None:
    n_tensors, n_subgraphs = len(sg.tensors or []), len(m.subgraphs or [])
    code_index = _index(op.opcodeIndex, len(m.operatorCodes or []), f"{where} operator {k} opcode index")
    code = m.operatorCodes[code_index]
    for field in ("inputs", "outputs", "intermediates"):
        for j, t in enumerate(getattr(op, field) if getattr(op, field) is not None else []):
            _index(t, n_tensors, f"{where} operator {k} {field}[{j}] tensor index", optional=field == "inputs")
    options = op.builtinOptions
    for name, value in vars(options).items() if options is not None else ():
        if name.endswith("SubgraphIndex") and isinstance(value, int):
            _index(value, n_subgraphs, f"{where} operator {k} {name}")
    if op.largeCustomOptionsSize:
        end = int(op.largeCustomOptionsOffset or 0) + int(op.largeCustomOptionsSize)
        if end > model_len:
            raise MeasurementError(f"invalid .tflite: {where} operator {k} custom options end past the file")
    name = _enum_names("BuiltinOperator").get(max(int(code.builtinCode), int(code.deprecatedBuiltinCode)), "")
    if name in _OP_ARITY:
        min_inputs, rank = _OP_ARITY[name]
        inputs = list(op.inputs if op.inputs is not None else [])
        outputs = list(op.outputs if op.outputs is not None else [])
        if len(inputs) < min_inputs or len(outputs) < 1 or min(inputs[:min_inputs]) < 0 or outputs[0] < 0:
            raise MeasurementError(
                f"invalid .tflite: {where} operator {k} ({name}) needs {min_inputs} inputs and an output, "
                f"found inputs {inputs} and outputs {outputs}"
            )
        weights = sg.tensors[inputs[1]]
        w_shape = [int(d) for d in (weights.shape if weights.shape is not None else [])]
        if len(w_shape) != rank:
            raise MeasurementError(
                f"invalid .tflite: {where} operator {k} ({name}) needs a {rank}-D weight tensor, "
                f"found tensor {inputs[1]} of shape {w_shape}"
            )


def _check_model(m: Any, model_len: int) -> None:
    """Check every index the graph reader or TFLM follows, and the shapes costed ops use."""
    n_buffers, n_subgraphs = len(m.buffers or []), len(m.subgraphs or [])
    for i, md in enumerate(m.metadata or []):
        _index(md.buffer, n_buffers, f"metadata {i} buffer index")
    for i, b in enumerate(m.metadataBuffer if m.metadataBuffer is not None else []):
        _index(b, n_buffers, f"metadata_buffer[{i}]")
    for i, sig in enumerate(m.signatureDefs or []):
        g = _index(sig.subgraphIndex, n_subgraphs, f"signature {i} subgraph index")
        n_t = len(m.subgraphs[g].tensors or [])
        for field in ("inputs", "outputs"):
            for j, tm in enumerate(getattr(sig, field) or []):
                _index(tm.tensorIndex, n_t, f"signature {i} {field}[{j}] tensor index")
    for g, sg in enumerate(m.subgraphs or []):
        where = f"subgraph {g}"
        tensors = sg.tensors or []
        for t_i, t in enumerate(tensors):
            _check_tensor(model_len, m, t, f"{where} tensor {t_i}")
        for field in ("inputs", "outputs"):
            for j, t in enumerate(getattr(sg, field) if getattr(sg, field) is not None else []):
                _index(t, len(tensors), f"{where} {field}[{j}] tensor index")
        for k, op in enumerate(sg.operators or []):
            _check_operator(model_len, m, sg, k, op, where)


def parse_tflite(model: bytes) -> GraphInfo:
    """Decode ``model`` (the bytes of a .tflite file) into a :class:`GraphInfo` of its main subgraph."""
    model = bytes(model)
    if len(model) < 8 or model[4:8] != b"TFL3":
        head = model[4:8] if len(model) >= 8 else model[:8]
        raise MeasurementError(f"not a TFLite flatbuffer: expected file identifier b'TFL3' at byte 4, found {head!r}")
    schema = _schema()
    try:
        m = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model, 0))
    except Exception as exc:  # flatbuffers raises bare struct/index errors on corrupt files
        raise MeasurementError(f"not a TFLite flatbuffer: cannot decode it ({type(exc).__name__}: {exc})") from None
    if not m.subgraphs:
        raise MeasurementError("not a usable TFLite model: it has no subgraphs")
    _check_model(m, len(model))
    sg = m.subgraphs[0]
    tensors = list(sg.tensors or [])
    buffers = list(m.buffers or [])
    op_names = _enum_names("BuiltinOperator")

    def data_of(t_index: int) -> bytes:
        b = tensors[t_index].buffer
        return _buffer_bytes(model, buffers[b]) if 0 < b < len(buffers) else b""

    def nbytes(t_index: int) -> int:
        t = tensors[t_index]
        return math.ceil(math.prod(_shape(t)) * _tensor_dtype(t.type)[1])

    const = {i for i in range(len(tensors)) if data_of(i)}
    layers: list[Layer] = []
    ops: list[str] = []
    zeros = weights = 0
    for index, operator in enumerate(sg.operators or []):
        code = m.operatorCodes[operator.opcodeIndex]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        op = op_names.get(builtin, f"OP_{builtin}")
        if op == "CUSTOM":
            op = "CUSTOM:" + (code.customCode.decode() if code.customCode else "?")
        if op not in ops:
            ops.append(op)
        ins = [i for i in (operator.inputs if operator.inputs is not None else []) if i >= 0]
        outs = [i for i in (operator.outputs if operator.outputs is not None else []) if i >= 0]
        out_shape = _shape(tensors[outs[0]]) if outs else ()
        w_in = [i for i in ins if i in const]
        if op in WEIGHT_OPS and len(ins) > 1 and ins[1] in const:
            dtype, _ = _tensor_dtype(tensors[ins[1]].type)
            if dtype in ("int8", "uint8", "int16", "int32", "float32", "float16"):
                values = np.frombuffer(data_of(ins[1]), dtype=dtype)
                zp = _quant(tensors[ins[1]])[1] or 0
                zeros += int(np.count_nonzero(values == zp))
                weights += values.size
        layers.append(
            Layer(
                index=index,
                op=op,
                macs=int(_macs(op, [tensors[i] for i in ins], out_shape)),
                weight_params=sum(math.prod(_shape(tensors[i])) for i in w_in),
                weight_bytes=sum(len(data_of(i)) for i in w_in),
                activation_bytes=sum(nbytes(i) for i in ins + outs if i not in const),
                output_shape=out_shape,
            )
        )

    def info(t_index: int) -> TensorInfo:
        t = tensors[t_index]
        scale, zp = _quant(t)
        name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
        return TensorInfo(name, _shape(t), _tensor_dtype(t.type)[0], scale, zp)

    const_buffers = {tensors[i].buffer for i in const}
    return GraphInfo(
        layers=tuple(layers),
        ops=tuple(ops),
        macs=sum(layer.macs for layer in layers),
        params=sum(math.prod(_shape(tensors[i])) for i in const),
        weight_bytes=sum(len(_buffer_bytes(model, buffers[b])) for b in const_buffers),
        zero_weight_fraction=zeros / weights if weights else 0.0,
        inputs=tuple(info(i) for i in (sg.inputs if sg.inputs is not None else [])),
        outputs=tuple(info(i) for i in (sg.outputs if sg.outputs is not None else [])),
        model_bytes=len(model),
    )


@dataclass(frozen=True)
class OpTensor:
    """One tensor as an operator sees it: TFLite type name (``"INT8"``), shape and quantisation."""

    index: int
    type: str
    shape: tuple[int, ...]
    scales: int  # number of quantisation scales: 0 (not quantised), 1 (per tensor) or one per channel
    zero_points: tuple[int, ...]
    scale: float | None  # the first scale
    constant: bool


@dataclass(frozen=True)
class OperatorTensors:
    """An operator of the main subgraph with its input and output tensors (``None``: optional input left out)."""

    index: int
    op: str
    inputs: tuple[OpTensor | None, ...]
    outputs: tuple[OpTensor, ...]


def read_operators(model: bytes) -> tuple[OperatorTensors, ...]:
    """Every operator of the main subgraph of ``model`` with the types and quantisation of its tensors.

    The bytes are checked with :func:`parse_tflite` first (same errors); TensorFlow is not imported.
    """
    model = bytes(model)
    parse_tflite(model)
    schema = _schema()
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model, 0))
    sg = m.subgraphs[0]
    tensors = list(sg.tensors or [])
    buffers = list(m.buffers or [])
    type_names = _enum_names("TensorType")
    op_names = _enum_names("BuiltinOperator")

    def tensor(i: int) -> OpTensor:
        t = tensors[i]
        q = t.quantization
        scales = 0 if q is None or q.scale is None else len(q.scale)
        zps = () if q is None or q.zeroPoint is None else tuple(int(z) for z in q.zeroPoint)
        b = t.buffer
        const = 0 < b < len(buffers) and bool(_buffer_bytes(model, buffers[b]))
        return OpTensor(
            index=i,
            type=type_names.get(t.type, f"type{t.type}"),
            shape=_shape(t),
            scales=scales,
            zero_points=zps,
            scale=float(q.scale[0]) if scales else None,
            constant=const,
        )

    out: list[OperatorTensors] = []
    for index, operator in enumerate(sg.operators or []):
        code = m.operatorCodes[operator.opcodeIndex]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        op = op_names.get(builtin, f"OP_{builtin}")
        if op == "CUSTOM":
            op = "CUSTOM:" + (code.customCode.decode() if code.customCode else "?")
        ins = tuple(tensor(i) if i >= 0 else None for i in (operator.inputs if operator.inputs is not None else []))
        outs = tuple(tensor(i) for i in (operator.outputs if operator.outputs is not None else []) if i >= 0)
        out.append(OperatorTensors(index=index, op=op, inputs=ins, outputs=outs))
    return tuple(out)
