"""Convert a trained tf_keras model to the artifact its target runs.

* TFLite (TFLite Micro and LiteRT targets): float32, float16 (weights), full-integer int8 with
  int8 input/output (post-training, calibrated on the representative set), int8 from a
  quantisation-aware model, and int16x8 (int16 activations, int8 weights).
* ONNX (ONNX Runtime targets): tf2onnx from the Keras model (float32), then
  ``onnxruntime.quantization.quantize_static`` (QDQ) for int8 / int16x8 with the representative
  set, or ``onnxruntime.transformers.float16`` for float16. A quantisation-aware model (``int8_qat``)
  converts through tf2onnx, which keeps its weights in float and turns its activation fake-quant
  nodes into QuantizeLinear/DequantizeLinear pairs; those pairs are removed and the QAT-trained
  float graph is quantised like ``int8`` (int8 weights and activations, QDQ).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from search import _lazy
from search.errors import CandidateError

if TYPE_CHECKING:
    import tf_keras


def _representative(x_rep: np.ndarray) -> Any:
    def gen() -> Iterator[list[np.ndarray]]:
        for sample in x_rep:
            yield [sample[np.newaxis, ...].astype(np.float32)]

    return gen


def _keras_converter(model: tf_keras.Model) -> Any:
    """A TFLite converter for ``model``'s inference function (``training=False``), traced once.

    ``TFLiteConverter.from_keras_model`` saves the model as a SavedModel and loads it back before
    converting: 90-95 % of the conversion time of a small model (4-12 s of it on 2 cores). Converting
    the traced concrete function directly (``experimental_lower_to_saved_model = False``) gives the
    same operators, quantisation parameters and bit-identical outputs (checked by
    ``tests/test_convert.py``) in a tenth of the time. What differs: the flatbuffer has no
    ``serving_default`` SignatureDef (nothing in tinyfront, TFLite Micro or ``get_input_details()``
    uses it) and the tensors are named after the Keras input and ``Identity``.
    """
    tf = _lazy.tensorflow()
    specs = [tf.TensorSpec([None, *t.shape[1:]], t.dtype, name=t.name.split(":")[0]) for t in model.inputs]

    def serve(*inputs: Any) -> Any:
        return model(inputs[0] if len(inputs) == 1 else list(inputs), training=False)

    concrete = tf.function(serve).get_concrete_function(*specs)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    converter.experimental_lower_to_saved_model = False
    return converter


def to_tflite(model: tf_keras.Model, precision: str, x_rep: np.ndarray) -> bytes:
    """Convert ``model`` to a .tflite flatbuffer at ``precision``.

    ``int8`` and ``int8_qat`` give full-integer models with int8 input and output (what TFLite
    Micro and CMSIS-NN want); ``int16x8`` keeps int16 input/output and quantises dense
    (FULLY_CONNECTED) weights per tensor, the only int16 form CMSIS-NN runs
    (``search.kernels`` checks the result).
    """
    tf = _lazy.tensorflow()
    try:
        converter = _keras_converter(model)
    except Exception as exc:  # a model whose call cannot be traced
        raise CandidateError(f"TFLite conversion to {precision} failed: {_one_line(exc)}") from exc
    if precision == "float32":
        pass
    elif precision == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision in ("int8", "int8_qat"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(x_rep)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    elif precision == "int16x8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        # CMSIS-NN's FULLY_CONNECTED takes per-channel weights only with int8 input
        # (kernels/cmsis_nn/fully_connected.cc, Prepare); TF 2.21 quantises dense layers per channel
        # by default. Per-tensor dense weights run on both the reference and the CMSIS-NN kernels.
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
        converter.representative_dataset = _representative(x_rep)
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
        converter.inference_input_type = tf.int16
        converter.inference_output_type = tf.int16
    else:
        raise CandidateError(f"unknown precision '{precision}'")
    try:
        return bytes(converter.convert())
    except Exception as exc:  # the converter raises many unrelated types
        raise CandidateError(f"TFLite conversion to {precision} failed: {_one_line(exc)}") from exc


class _Reader:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over the representative set."""

    def __init__(self, input_name: str, x_rep: np.ndarray) -> None:
        self._items = iter([{input_name: s[np.newaxis, ...].astype(np.float32)} for s in x_rep])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def to_onnx(model: tf_keras.Model, precision: str, x_rep: np.ndarray, out_path: Path) -> None:
    """Convert ``model`` to ONNX at ``precision`` and write it to ``out_path``."""
    tf = _lazy.tensorflow()
    tf2onnx = _lazy.require("tf2onnx")
    onnx = _lazy.require("onnx")
    spec = (tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="input"),)
    try:
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
    except Exception as exc:
        raise CandidateError(f"ONNX conversion failed: {_one_line(exc)}") from exc
    if precision == "float32":
        onnx.save(proto, str(out_path))
        return
    if precision == "int8_qat":
        # tf2onnx keeps the QAT model's weights as float initializers (batch norm folded in) and
        # turns only the activation fake-quant into QuantizeLinear/DequantizeLinear pairs: an int8
        # model in name only. Drop those pairs and quantise the QAT-trained float graph for real.
        _strip_fake_quant(proto)
    if precision == "float16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        onnx.save(convert_float_to_float16(proto, keep_io_types=True), str(out_path))
        return
    if precision not in ("int8", "int8_qat", "int16x8"):
        raise CandidateError(f"unknown precision '{precision}'")
    quant = _lazy.require("onnxruntime.quantization")
    activation = quant.QuantType.QInt16 if precision == "int16x8" else quant.QuantType.QInt8
    with tempfile.TemporaryDirectory() as tmp:
        float_path = Path(tmp) / "float.onnx"
        onnx.save(proto, str(float_path))
        try:
            quant.quantize_static(
                str(float_path),
                str(out_path),
                _Reader(proto.graph.input[0].name, x_rep),
                quant_format=quant.QuantFormat.QDQ,
                activation_type=activation,
                weight_type=quant.QuantType.QInt8,
                per_channel=True,
            )
        except Exception as exc:
            raise CandidateError(f"ONNX Runtime static quantisation ({precision}) failed: {_one_line(exc)}") from exc


#: Ops that only move or reshape values: tf2onnx may put them between a QuantizeLinear and its DequantizeLinear.
_LAYOUT_OPS = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity")


def _strip_fake_quant(proto: Any) -> None:
    """Remove every QuantizeLinear ... DequantizeLinear pair from ``proto`` in place.

    ``x -> Q -> [Reshape / Transpose ...] -> DQ -> y`` becomes ``x -> [Reshape / Transpose ...] -> y``;
    an Identity keeps a graph output's name. Initializers left unused (the pairs' scales and zero
    points) are removed.
    """
    onnx = _lazy.require("onnx")
    graph = proto.graph
    producer = {out: node for node in graph.node for out in node.output}
    outputs = {o.name for o in graph.output}
    rename: dict[str, str] = {}
    dropped: set[int] = set()
    identities = []
    for node in graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        q = producer.get(node.input[0])
        while q is not None and q.op_type in _LAYOUT_OPS:
            q = producer.get(q.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            continue
        dropped.update((id(node), id(q)))
        rename[q.output[0]] = q.input[0]
        if node.output[0] in outputs:
            identities.append(onnx.helper.make_node("Identity", [node.input[0]], [node.output[0]]))
        else:
            rename[node.output[0]] = node.input[0]

    def resolve(name: str) -> str:
        while name in rename:
            name = rename[name]
        return name

    keep = [n for n in graph.node if id(n) not in dropped] + identities
    for node in keep:
        for i, name in enumerate(node.input):
            node.input[i] = resolve(name)
    del graph.node[:]
    graph.node.extend(keep)
    used = {name for node in keep for name in node.input}
    for init in [init for init in graph.initializer if init.name not in used]:
        graph.initializer.remove(init)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:300]
