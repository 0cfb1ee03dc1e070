"""The static check against the device's kernels (search/kernels.py) and the conversion it guards.

The rules come from tflite-micro's CMSIS-NN kernels; the cases that matter are proven on real
models: the MLPerf Tiny models (they run on CMSIS-NN) pass, an int16x8 model whose dense weights
are quantised per channel (TensorFlow's default, refused by kernels/cmsis_nn/fully_connected.cc)
is flagged, and the conversion tinyfront does now is not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from search.candidate import check_deployable, check_device_kernels, supported_precisions
from search.errors import CandidateError, MeasurementError
from search.families import FAMILIES
from search.kernels import device_kernel_problems, kernel_set
from search.result import CandidateSpec
from search.targets import get_target, load_targets
from search.tflite_graph import read_operators

MLPERF_FILES = [
    "ad01_fp32.tflite", "ad01_int8.tflite", "kws_ref_model.tflite", "person_detect.tflite",
    "pretrainedResnet.tflite", "pretrainedResnet_quant.tflite", "vww_96_float.tflite", "vww_96_int8.tflite",
]  # fmt: skip


@pytest.mark.parametrize("name", MLPERF_FILES)
def test_mlperf_tiny_models_pass_cmsis_nn(mlperf_dir: Path, name: str) -> None:
    path = mlperf_dir / name
    if not path.exists():
        pytest.skip(f"{path} missing")
    model = path.read_bytes()
    for core in ("cortex-m0plus", "cortex-m4", "cortex-m33", "cortex-m55"):
        assert device_kernel_problems(model, core) == []
    assert len(read_operators(model)) > 0


def test_kernel_sets_per_core() -> None:
    assert kernel_set("cortex-m33").name == "CMSIS-NN" and kernel_set("cortex-m33").checked
    esp = kernel_set("xtensa-lx7")
    assert esp.name == "ESP-NN" and not esp.checked and "not checked" in esp.note
    assert kernel_set("cortex-a72").name == "reference"
    with pytest.raises(MeasurementError, match="TFL3"):
        device_kernel_problems(b"not a model at all", "cortex-m4")
    with pytest.raises(MeasurementError, match="TFL3"):
        device_kernel_problems(b"not a model at all", "xtensa-lx7")


def test_built_in_families_are_not_refused_before_training() -> None:
    targets = [t for t in load_targets().values() if t.runtime == "tflm"]
    assert {t.core for t in targets} >= {"cortex-m4", "cortex-m33", "xtensa-lx7"}
    for target in targets:
        for precision in supported_precisions(target):
            for family in FAMILIES:
                check_deployable(CandidateSpec(family=family, precision=precision, sparsity=0.5), target)


@pytest.fixture(scope="module")
def int16_models() -> dict[str, bytes]:
    """A tiny seeded CNN with a dense head, as int16x8: TensorFlow's default vs tinyfront's conversion."""
    import tensorflow as tf
    import tf_keras as keras

    from search.convert import to_tflite

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.layers.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.DepthwiseConv2D(3, padding="same", activation="relu"),
            keras.layers.AveragePooling2D(8),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    x_rep = np.random.default_rng(0).uniform(0, 1, size=(16, 8, 8, 1)).astype(np.float32)

    def representative():  # type: ignore[no-untyped-def]
        for sample in x_rep:
            yield [sample[np.newaxis]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    conv.inference_input_type = tf.int16
    conv.inference_output_type = tf.int16
    return {"per_channel": bytes(conv.convert()), "tinyfront": to_tflite(model, "int16x8", x_rep)}


def _dense_scales(model: bytes) -> int:
    (fc,) = [op for op in read_operators(model) if op.op == "FULLY_CONNECTED"]
    assert fc.inputs[0] is not None and fc.inputs[0].type == "INT16"
    assert fc.inputs[1] is not None and fc.inputs[1].type == "INT8"
    return fc.inputs[1].scales


@pytest.mark.slow
def test_per_channel_int16_dense_is_flagged_with_the_kernels_reason(int16_models: dict[str, bytes]) -> None:
    model = int16_models["per_channel"]
    assert _dense_scales(model) == 10  # TensorFlow 2.21 quantises the dense layer per channel
    problems = device_kernel_problems(model, "cortex-m33")
    assert len(problems) == 1
    assert problems[0].startswith("FULLY_CONNECTED #")
    assert "INT16 in, INT8 weights, INT16 out" in problems[0]
    assert "per channel (10 scales)" in problems[0] and "kernels/cmsis_nn/fully_connected.cc" in problems[0]
    # The gap this closes: the reference kernels (the host interpreter) run it all the same.
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(model, arena_size=64 * 1024)
    interpreter.set_input(np.zeros((1, 8, 8, 1), dtype=np.int16), 0)
    interpreter.invoke()
    assert np.asarray(interpreter.get_output(0)).shape == (1, 10)
    # ESP-NN is not checked: nothing is reported, and kernel_set says so.
    assert device_kernel_problems(model, "xtensa-lx7") == []
    # The candidate factory turns the refusal into a failed candidate; non-TFLM targets are not checked.
    with pytest.raises(CandidateError, match=r"stm32l552 \(cortex-m33, CMSIS-NN kernels\).*fully_connected\.cc"):
        check_device_kernels(model, get_target("stm32l552"))
    check_device_kernels(model, get_target("raspberry-pi-4"))


@pytest.mark.slow
def test_tinyfront_int16x8_conversion_runs_on_cmsis_nn(int16_models: dict[str, bytes]) -> None:
    model = int16_models["tinyfront"]
    assert _dense_scales(model) == 1  # per tensor
    for core in ("cortex-m4", "cortex-m33", "cortex-m55"):
        assert device_kernel_problems(model, core) == []
    check_device_kernels(model, get_target("stm32l552"))
    # Only the dense layer changed: the convolutions keep per-channel weights.
    convs = [op for op in read_operators(model) if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert [op.inputs[1].scales for op in convs if op.inputs[1] is not None] == [8, 8]


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_every_tflm_precision_dense_and_pruned_passes(family: str) -> None:
    """Each built-in family at each TFLM precision, dense and pruned, converts to a model CMSIS-NN accepts."""
    from search import training
    from search.convert import to_tflite
    from search.data import load_demo
    from search.families import build_model

    demo = load_demo(seed=0)
    x, y = demo.x_train[:256], demo.y_train[:256]
    settings = training.TrainSettings(epochs=1, finetune_epochs=1, batch_size=64, seed=0)
    base = build_model(family, x.shape[1:], demo.num_classes, 0.25, seed=0)
    target = get_target("stm32l552")
    for sparsity in (0.0, 0.5):
        model = training.prune(training.clone(base), sparsity, x, y, settings)
        for precision in supported_precisions(target):
            final = model
            if precision == "int8_qat":
                final = training.quantize_aware(model, x, y, settings, keep_sparsity=sparsity > 0)
            tflite = to_tflite(final, precision, demo.x_rep[:16])
            assert device_kernel_problems(tflite, target.core) == [], (family, sparsity, precision)
            if precision == "int16x8":
                assert _dense_scales(tflite) == 1
