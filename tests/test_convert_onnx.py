"""ONNX conversion of a quantisation-aware model: a real int8 QDQ model, not float weights with QDQ on the side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def _initializer_bytes(model: object) -> dict[str, int]:
    import onnx
    from onnx import numpy_helper

    out: dict[str, int] = {}
    for init in model.graph.initializer:  # type: ignore[attr-defined]
        kind = onnx.TensorProto.DataType.Name(init.data_type)
        out[kind] = out.get(kind, 0) + numpy_helper.to_array(init).nbytes
    return out


@pytest.mark.slow
def test_int8_qat_onnx_has_int8_weights_and_matches_the_qat_model(tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    from search import training
    from search.convert import to_onnx
    from search.data import load_demo

    demo = load_demo(seed=0)
    settings = training.TrainSettings(epochs=3, finetune_epochs=1, batch_size=64, seed=0)
    base, _ = training.train_base("mobilenet_v1", 0.5, demo.x_train, demo.y_train, demo.num_classes, settings)
    qat = training.quantize_aware(base, demo.x_train, demo.y_train, settings, keep_sparsity=False)
    x, y = demo.x_val[:64], demo.y_val[:64]

    # What tf2onnx alone gives (tinyfront's output before): every weight stays float32.
    spec = (tf.TensorSpec((None, *qat.input_shape[1:]), tf.float32, name="input"),)
    raw, _ = tf2onnx.convert.from_keras(qat, input_signature=spec, opset=17)
    assert "INT8" not in _initializer_bytes(raw)

    to_onnx(qat, "int8_qat", demo.x_rep, tmp_path / "qat.onnx")
    to_onnx(base, "float32", demo.x_rep, tmp_path / "f32.onnx")
    model = onnx.load(str(tmp_path / "qat.onnx"))
    sizes = _initializer_bytes(model)
    float_weights = sum(v for k, v in _initializer_bytes(onnx.load(str(tmp_path / "f32.onnx"))).items() if k == "FLOAT")
    # Weights are int8 (a quarter of the float32 bytes); what stays float is per-channel scales.
    assert sizes["INT8"] == pytest.approx(float_weights / 4, rel=0.1)
    assert sizes.get("FLOAT", 0) < sizes["INT8"]
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.op_type in ("Conv", "MatMul", "Gemm"):
            assert producers.get(node.input[1]) == "DequantizeLinear", node.name
    # ONNX Runtime runs it and agrees with the QAT model it came from.
    sess = ort.InferenceSession(str(tmp_path / "qat.onnx"), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    onnx_out = np.concatenate([sess.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])
    keras_out = qat.predict(x, verbose=0)
    assert float(np.mean(onnx_out.argmax(1) == keras_out.argmax(1))) >= 0.9
    keras_acc = float(np.mean(keras_out.argmax(1) == y))
    assert keras_acc > 0.5
    assert abs(float(np.mean(onnx_out.argmax(1) == y)) - keras_acc) <= 0.05
