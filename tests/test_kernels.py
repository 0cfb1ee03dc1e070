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


TFLM_TREES = Path(__file__).resolve().parents[1].parent / "shared" / "tflm"
_CMSIS_KERNELS = "tensorflow/lite/micro/kernels/cmsis_nn"


def _syntax_check(compiler: str, tree: Path, folder: Path, headers: list[str], flags: list[str]) -> None:
    """``compiler -fsyntax-only`` of one probe that includes every generated header.

    Each header is the generated text with only its include guard made unique, included inside a
    namespace of its own, after the TFLM headers it includes (so their guards keep them global).
    """
    import subprocess

    lines = [
        '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"',
        '#include "tensorflow/lite/micro/kernels/pad.h"',
        '#include "tensorflow/lite/micro/kernels/transpose.h"',
    ]
    for i, text in enumerate(headers):
        (folder / f"resolver_{i}.h").write_text(text.replace("TINYFRONT_MODEL_OP_RESOLVER_H_", f"RESOLVER_{i}_H_"))
        lines += [
            f"namespace model_{i} {{",
            f'#include "resolver_{i}.h"',
            "int probe() {\n  static ModelOpResolver resolver;",
            "  return RegisterModelOps(resolver) == kTfLiteOk ? 0 : 1;\n}",
            "}",
        ]
    probe = folder / "probe.cc"
    probe.write_text("\n".join(lines) + "\n")
    includes = [f"-I{folder}", f"-I{tree}"] + [
        f"-I{tree / 'third_party' / sub}" for sub in ("flatbuffers/include", "gemmlowp", "ruy", "kissfft")
    ]
    cmd = [compiler, "-std=c++17", "-fsyntax-only", "-Wall", "-Werror", "-DTF_LITE_STATIC_MEMORY", *flags]
    done = subprocess.run([*cmd, *includes, str(probe)], capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-3000:]


@pytest.mark.slow
def test_type_specific_resolvers_compile_in_both_trees(tmp_path: Path) -> None:
    """The generated resolvers of an int8, an int16x8 and a float32 model and of the MLPerf Tiny models
    compile with g++ against the reference tree and with arm-none-eabi-g++ + CMSIS_NN against the
    cmsis_nn tree (include paths as the bundle's Makefile has them), and every type-specific variant
    they name is defined by the CMSIS-NN kernels (so the Cortex-M link finds it)."""
    import shutil

    import tf_keras as keras

    from firmware_export._resolver import op_registrations, resolver_values
    from firmware_export._templates import render
    from search.convert import to_tflite

    if not TFLM_TREES.is_dir():
        pytest.skip(f"TFLite Micro trees not found at {TFLM_TREES}")
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
    models = {p: to_tflite(model, p, x_rep) for p in ("int8", "int16x8", "float32")}
    mlperf = TFLM_TREES.parent / "models" / "mlperf-tiny"
    models.update({name: (mlperf / name).read_bytes() for name in MLPERF_FILES if (mlperf / name).exists()})
    headers, variants = [], {}
    for name, tflite in models.items():
        regs = op_registrations(tflite, "cortex-m4")
        headers.append(render("tflm/model_op_resolver.h", {"version": "test", **resolver_values(regs)}))
        variants[name] = [r.variant for r in regs if r.variant]
    ops = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "FULLY_CONNECTED", "SOFTMAX")
    assert variants["int8"] == [f"Register_{op}_INT8" for op in ops]
    assert variants["int16x8"] == [f"Register_{op}_INT16" for op in ops]
    assert variants["float32"] == []
    for name in MLPERF_FILES:
        if name in variants:
            floating = "float" in name or "fp32" in name or name == "pretrainedResnet.tflite"
            assert (variants[name] == []) == floating, name
    defined = "".join(p.read_text() for p in (TFLM_TREES / "cmsis_nn" / _CMSIS_KERNELS).glob("*.cc"))
    for variant in {v for names in variants.values() for v in names}:
        assert f"TFLMRegistration {variant}() {{" in defined, f"{variant} is not defined by the CMSIS-NN kernels"
    compiled = 0
    if shutil.which("g++"):
        (tmp_path / "host").mkdir()
        _syntax_check("g++", TFLM_TREES / "reference", tmp_path / "host", headers, [])
        compiled += 1
    if shutil.which("arm-none-eabi-g++"):
        cmsis = TFLM_TREES / "cmsis_nn"
        arm = ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-DCMSIS_NN"]
        arm += [f"-I{cmsis / 'third_party' / sub}" for sub in ("cmsis", "cmsis_nn", "cmsis_nn/Include")]
        arm += [f"-I{cmsis / 'third_party/cmsis/CMSIS/Core/Include'}"]
        (tmp_path / "arm").mkdir()
        _syntax_check("arm-none-eabi-g++", cmsis, tmp_path / "arm", headers, arm)
        compiled += 1
    if compiled == 0:
        pytest.skip("neither g++ nor arm-none-eabi-g++ is installed")


def test_esp32_gets_generic_registrations(mlperf_dir: Path) -> None:
    from firmware_export._resolver import op_registrations

    model = (mlperf_dir / "kws_ref_model.tflite").read_bytes()
    assert [r.call for r in op_registrations(model, "xtensa-lx7")] == [
        "AddConv2D()", "AddDepthwiseConv2D()", "AddAveragePool2D()", "AddReshape()", "AddFullyConnected()",
        "AddSoftmax()",
    ]  # fmt: skip
    assert [r.variant for r in op_registrations(model, "cortex-m4")] == [
        "Register_CONV_2D_INT8", "Register_DEPTHWISE_CONV_2D_INT8", "Register_AVERAGE_POOL_2D_INT8", None,
        "Register_FULLY_CONNECTED_INT8", "Register_SOFTMAX_INT8",
    ]  # fmt: skip
