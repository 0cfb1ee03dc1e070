from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from search.errors import ConfigError
from search.families import FAMILIES, build_model, describe_family, mobilenet_v1_default_depth, scaled_filters

DEMO_SHAPE = (8, 8, 1)


def conv_kernels(model: Any) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
    """(layer type, kernel shape, output shape) of every convolution, in order."""
    from search._lazy import keras

    k = keras()
    return [
        (type(layer).__name__, tuple(layer.weights[0].shape), tuple(layer.output_shape))
        for layer in model.layers
        if isinstance(layer, k.layers.Conv2D | k.layers.DepthwiseConv2D)
    ]


def test_family_names_and_descriptions() -> None:
    assert FAMILIES == ("mobilenet_v1", "ds_cnn")
    assert "MobileNetV1" in describe_family("mobilenet_v1") and "DS-CNN" in describe_family("ds_cnn")
    assert "user builder pkg.mod:fn" in describe_family("pkg.mod:fn")
    with pytest.raises(ConfigError, match="family must be one of mobilenet_v1, ds_cnn"):
        describe_family("resnet")


def test_scaled_filters_are_multiples_of_eight() -> None:
    assert [scaled_filters(f, 0.25) for f in (32, 64, 128, 1024)] == [8, 16, 32, 256]
    assert scaled_filters(64, 0.3) == 16 and scaled_filters(32, 0.05) == 8 and scaled_filters(64, 2.0) == 128


@pytest.mark.parametrize("family", FAMILIES)
def test_parameters_grow_with_width_and_output_shape(family: str) -> None:
    counts = []
    for width in (0.25, 0.5, 1.0):
        model = build_model(family, DEMO_SHAPE, 10, width)
        assert model.input_shape == (None, *DEMO_SHAPE) and model.output_shape == (None, 10)
        counts.append(model.count_params())
    assert counts[0] < counts[1] < counts[2]
    if family == "ds_cnn":
        assert counts == [2858, 7754, 23690]  # filters 16, 32, 64


def test_mobilenet_default_depth_follows_the_input() -> None:
    assert mobilenet_v1_default_depth(DEMO_SHAPE) == 3  # 8 -> 4 -> 2, block 4 would need a 1x1 map
    assert mobilenet_v1_default_depth((96, 96, 3)) == 13  # the MLPerf VWW input keeps every block
    assert mobilenet_v1_default_depth((32, 32, 3)) == 11
    convs = conv_kernels(build_model("mobilenet_v1", DEMO_SHAPE, 10, 0.5))
    assert len(convs) == 1 + 2 * 3 and [out[1:3] for _, _, out in convs][-1] == (2, 2)


def test_mobilenet_structure_and_small_input_strides() -> None:
    model = build_model("mobilenet_v1", DEMO_SHAPE, 10, 1.0, depth=13)
    convs = conv_kernels(model)
    assert len(convs) == 1 + 2 * 13
    assert convs[0][:2] == ("Conv2D", (3, 3, 1, 32))
    pointwise = [kernel[-1] for kind, kernel, _ in convs[1:] if kind == "Conv2D"]
    assert pointwise == [64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]
    # 8x8 -> 4x4 (first conv) -> 2x2 (block 2); later stride-2 blocks stay at 2x2 instead of 1x1
    assert [out[1:3] for _, _, out in convs] == [(4, 4)] + [(4, 4)] * 2 + [(2, 2)] * 24
    big = build_model("mobilenet_v1", (96, 96, 3), 2, 0.25, depth=13)
    assert conv_kernels(big)[-1][2] == (None, 3, 3, 256)  # the MLPerf VWW 0.25x map: 3x3x256
    assert build_model("mobilenet_v1", DEMO_SHAPE, 10, 0.5, depth=3).count_params() < 20_000


def test_ds_cnn_structure_and_clamped_kernel() -> None:
    convs = conv_kernels(build_model("ds_cnn", (49, 10, 1), 12, 1.0))
    assert convs[0] == ("Conv2D", (10, 4, 1, 64), (None, 25, 5, 64))  # the MLPerf KWS first layer
    assert len(convs) == 1 + 2 * 4
    small = conv_kernels(build_model("ds_cnn", (8, 3, 1), 4, 0.25, depth=2))
    assert small[0][1] == (8, 3, 1, 16) and len(small) == 1 + 2 * 2


def test_seed_fixes_the_initial_weights() -> None:
    a = build_model("ds_cnn", DEMO_SHAPE, 3, 0.25, seed=7).get_weights()
    b = build_model("ds_cnn", DEMO_SHAPE, 3, 0.25, seed=7).get_weights()
    c = build_model("ds_cnn", DEMO_SHAPE, 3, 0.25, seed=8).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"width": 0.0}, r"width must be in \(0, 2\], got 0.0"),
        ({"width": 2.5}, r"width must be in \(0, 2\], got 2.5"),
        ({"family": "resnet"}, "family must be one of mobilenet_v1, ds_cnn or 'package.module:function', got 'resnet'"),
        ({"depth": 14}, r"depth of mobilenet_v1 must be in 1..13, got 14"),
        ({"family": "ds_cnn", "depth": 5}, r"depth of ds_cnn must be in 1..4, got 5"),
        ({"num_classes": 1}, "num_classes must be >= 2, got 1"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"family": "mobilenet_v1", "input_shape": DEMO_SHAPE, "num_classes": 10, "width": 0.5}
    args.update(kwargs)
    with pytest.raises(ConfigError, match=match):
        build_model(**args)


BUILDERS = """
import tf_keras


def good(input_shape, num_classes, width):
    inputs = tf_keras.Input(shape=input_shape)
    x = tf_keras.layers.Conv2D(max(8, int(16 * width)), 3)(inputs)
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    return tf_keras.Model(inputs, tf_keras.layers.Dense(num_classes, activation="softmax")(x))


def wrong_output(input_shape, num_classes, width):
    inputs = tf_keras.Input(shape=input_shape)
    x = tf_keras.layers.Flatten()(inputs)
    return tf_keras.Model(inputs, tf_keras.layers.Dense(num_classes + 1)(x))


def keras3(input_shape, num_classes, width):
    import keras

    return keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(), keras.layers.Dense(num_classes)])


def not_a_model(input_shape, num_classes, width):
    return "model"


NOT_CALLABLE = 3
"""


@pytest.fixture
def builders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "my_builders.py").write_text(textwrap.dedent(BUILDERS))
    (tmp_path / "broken_builders.py").write_text("import no_such_package_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_builders"


def test_user_builder(builders: str) -> None:
    small = build_model(f"{builders}:good", DEMO_SHAPE, 4, 0.5, seed=1)
    large = build_model(f"{builders}:good", DEMO_SHAPE, 4, 2.0, seed=1)
    assert small.output_shape == (None, 4) and small.count_params() < large.count_params()


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (
            "broken_builders:f",
            r"cannot import module 'broken_builders' of builder 'broken_builders:f'.*no_such_package_xyz",
        ),
        ("my_builders:missing", r"module 'my_builders' has no function 'missing'"),
        ("my_builders:NOT_CALLABLE", r"builder 'my_builders:NOT_CALLABLE' must be a function, found int"),
        ("my_builders:wrong_output", r"must output shape \(None, 4\), found \(None, 5\)"),
        ("my_builders:not_a_model", r"must return a tf_keras.Model, returned builtins.str"),
        ("my_builders:keras3", r"returned keras\.src\..*Keras 3 model: build it with tf_keras"),
        (":good", r"a user builder is 'package.module:function', got ':good'"),
    ],
)
def test_bad_user_builder(builders: str, spec: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_model(spec, DEMO_SHAPE, 4, 0.5)


def test_depth_is_refused_for_user_builders(builders: str) -> None:
    with pytest.raises(ConfigError, match="depth applies to the built-in families"):
        build_model(f"{builders}:good", DEMO_SHAPE, 4, 0.5, depth=2)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    ("family", "depth", "epochs", "min_accuracy"),
    [("ds_cnn", None, 4, 0.5), ("mobilenet_v1", 13, 1, 0.0)],  # mobilenet: the full 13 blocks, barely trained
)
def test_int8_conversion_runs_on_tflite_micro(family: str, depth: int | None, epochs: int, min_accuracy: float) -> None:
    """Train briefly on the demo, convert to full-int8 TFLite and run the validation set in TFLite Micro."""
    from tflite_micro.python.tflite_micro import runtime

    from search._lazy import keras, tensorflow
    from search.data import load_demo

    tf, k = tensorflow(), keras()
    ds = load_demo(seed=0)
    model = build_model(family, ds.input_shape, ds.num_classes, 0.25, seed=0, depth=depth)
    model.compile(optimizer=k.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(ds.x_train, ds.y_train, batch_size=64, epochs=epochs, verbose=0)
    x_val, y_val = ds.x_val[:120], ds.y_val[:120]
    float_probs = model.predict(x_val, verbose=0)

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[np.newaxis]] for x in ds.x_rep[:50])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    flatbuffer = converter.convert()

    lite = tf.lite.Interpreter(model_content=flatbuffer)
    ops = {d["op_name"] for d in lite._get_ops_details()}
    assert ops == {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"}
    (in_scale, in_zero), (out_scale, out_zero) = (
        lite.get_input_details()[0]["quantization"],
        lite.get_output_details()[0]["quantization"],
    )
    micro = runtime.Interpreter.from_bytes(flatbuffer, arena_size=200_000)
    probs = []
    for x in x_val:
        q = np.clip(np.round(x / in_scale + in_zero), -128, 127).astype(np.int8)[np.newaxis]
        micro.set_input(q, 0)
        micro.invoke()
        out = micro.get_output(0)
        assert out.dtype == np.int8 and out.shape == (1, 10)
        probs.append((out[0].astype(np.float32) - out_zero) * out_scale)
    micro_probs = np.stack(probs)
    assert np.mean(np.abs(micro_probs - float_probs)) < 0.03  # int8 TFLM vs float Keras
    agree = np.mean(np.argmax(micro_probs, 1) == np.argmax(float_probs, 1))
    assert agree >= (0.85 if min_accuracy > 0 else 0.0)
    assert np.mean(np.argmax(micro_probs, 1) == y_val) >= min_accuracy
