"""to_tflite converts the traced inference function directly: the same model as TensorFlow's SavedModel detour."""

from __future__ import annotations

import numpy as np
import pytest

from search.convert import to_tflite
from search.tflite_graph import parse_tflite


def _outputs(model: bytes, x: np.ndarray) -> tuple[np.ndarray, dict[str, object]]:
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(model)
    details = interp.get_input_details(0)
    scale, zero = details["quantization_parameters"]["scales"], details["quantization_parameters"]["zero_points"]
    dtype = details["dtype"]
    outs = []
    for sample in x:
        v = sample[None]
        if dtype != np.float32:
            info = np.iinfo(dtype)
            v = np.clip(np.round(v / scale[0] + zero[0]), info.min, info.max).astype(dtype)
        interp.set_input(v, 0)
        interp.invoke()
        outs.append(interp.get_output(0).copy())
    return np.concatenate(outs), details


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "int8", "int16x8"])
def test_direct_conversion_matches_the_saved_model_route(precision: str) -> None:
    from search import _lazy, training
    from search.data import load_demo

    tf = _lazy.tensorflow()
    data = load_demo(seed=0)
    settings = training.TrainSettings(epochs=1, seed=0)
    _lazy.keras().utils.set_random_seed(0)
    model, _ = training.train_base("mobilenet_v1", 0.25, data.x_train, data.y_train, data.num_classes, settings)
    ours = to_tflite(model, precision, data.x_rep)

    reference = tf.lite.TFLiteConverter.from_keras_model(model)  # TensorFlow's SavedModel route
    if precision != "float32":
        reference.optimizations = [tf.lite.Optimize.DEFAULT]
        reference.representative_dataset = lambda: ([s[None].astype(np.float32)] for s in data.x_rep)
        if precision == "int8":
            reference.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            reference.inference_input_type = reference.inference_output_type = tf.int8
        else:
            reference._experimental_disable_per_channel_quantization_for_dense_layers = True
            reference.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            ]
            reference.inference_input_type = reference.inference_output_type = tf.int16
    theirs = bytes(reference.convert())

    a, b = parse_tflite(ours), parse_tflite(theirs)
    assert [(layer.op, layer.output_shape) for layer in a.layers] == [
        (layer.op, layer.output_shape) for layer in b.layers
    ]
    assert a.weight_bytes == b.weight_bytes
    assert abs(len(ours) - len(theirs)) < 512  # only the SignatureDef and tensor names differ
    out_a, in_a = _outputs(ours, data.x_val[:40])
    out_b, in_b = _outputs(theirs, data.x_val[:40])
    assert in_a["shape"].tolist() == in_b["shape"].tolist() == [1, 8, 8, 1]
    np.testing.assert_array_equal(in_a["quantization_parameters"]["scales"], in_b["quantization_parameters"]["scales"])
    np.testing.assert_array_equal(out_a, out_b)  # bit-identical on the TFLite Micro interpreter
