"""TFLite Micro bundle: bytes, compilation, arena, expected output, op resolver, refusals.

The candidate folders are built once per session by :func:`make_candidates` (also used by
test_export_onnx.py and test_export_cli.py): a tiny tf_keras CNN trained on scikit-learn's
digits, converted for real, laid out as the candidate factory lays out its artifacts.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import TFLM_CMSIS, device_runner_missing

from search.errors import ExportError

N_VAL = 32


def _figure(value: float, unit: str, kind: str, method: str, error_pct: float | None = None) -> dict:
    return {"value": float(value), "unit": unit, "kind": kind, "method": method, "error_pct": error_pct}


def make_candidates(root: Path) -> dict[str, Path]:
    """Artifacts folders ``int8``, ``float32`` (both with model.tflite + model.onnx) and ``float16``.

    Built once under ``root`` (a ``done`` marker makes later calls reuse the folders).
    """
    folders = {name: root / name for name in ("int8", "float32", "float16")}
    if (root / "done").exists():
        return folders
    import tensorflow as tf
    import tf2onnx
    import tf_keras as keras
    from onnxruntime import quantization as oq
    from sklearn.datasets import load_digits

    from search.targets import get_target
    from search.tflm import run_tflm

    digits = load_digits()
    x = (digits.images.astype(np.float32) / np.float32(16.0))[..., np.newaxis]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    x_train, y_train, x_val, y_val = x[:1400], y[:1400], x[1400:], y[1400:]
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.layers.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.DepthwiseConv2D(3, padding="same", activation="relu"),
            keras.layers.AveragePooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=4, batch_size=32, verbose=0)
    keras_acc = float(model.evaluate(x_val, y_val, verbose=0)[1])

    def representative():
        for sample in x_train[:100]:
            yield [sample[np.newaxis]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    tflite = {"int8": conv.convert(), "float32": tf.lite.TFLiteConverter.from_keras_model(model).convert()}
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]
    tflite["float16"] = conv.convert()

    spec = (tf.TensorSpec((None, 8, 8, 1), tf.float32, name="input"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
    folders["float32"].mkdir(parents=True, exist_ok=True)
    (folders["float32"] / "model.onnx").write_bytes(proto.SerializeToString())

    class Reader(oq.CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"input": s[np.newaxis]} for s in x_train[:100]])

        def get_next(self) -> dict | None:
            return next(self.items, None)

    folders["int8"].mkdir(parents=True, exist_ok=True)
    oq.quantize_static(
        str(folders["float32"] / "model.onnx"),
        str(folders["int8"] / "model.onnx"),
        Reader(),
        quant_format=oq.QuantFormat.QDQ,
        activation_type=oq.QuantType.QInt8,
        weight_type=oq.QuantType.QInt8,
        per_channel=True,
    )
    targets = {"int8": "stm32l552", "float32": "nucleo-f446re", "float16": "stm32h743"}
    for name, folder in folders.items():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.tflite").write_bytes(tflite[name])
        np.savez(folder / "val_samples.npz", x=x_val[:N_VAL], y=y_val[:N_VAL])
        deployed = keras_acc
        if name != "float16":
            preds = run_tflm(tflite[name], x_val[:N_VAL]).argmax(axis=1)
            deployed = float(np.mean(preds == y_val[:N_VAL]))
        result = {
            "spec": {"family": "tiny_cnn", "width": 0.25, "sparsity": 0.0, "precision": name, "seed": 0},
            "target": get_target(targets[name]).to_dict(),
            "dataset": {
                "name": "demo:digits",
                "fingerprint": "test-fixture",
                "class_names": [str(i) for i in range(10)],
                "input_shape": [8, 8, 1],
            },
            "figures": {
                "accuracy": _figure(deployed, "fraction", "measured", f"TFLite Micro on {N_VAL} validation samples"),
                "keras_accuracy": _figure(keras_acc, "fraction", "measured", "tf_keras evaluate, validation split"),
                "flash_kb": _figure(len(tflite[name]) / 1024, "KB", "measured", ".tflite size"),
                "latency_ms": _figure(0.42, "ms", "estimated", "per-layer cost model (test fixture)", 30.0),
            },
            "tinyfront_version": "0.1.0",
            "extra_key_from_the_future": {"ignored": True},
        }
        (folder / "result.json").write_text(json.dumps(result, indent=2))
    (root / "done").write_text("ok")
    return folders


@pytest.fixture(scope="session")
def candidates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_candidates(tmp_path_factory.getbasetemp() / "export_candidates")


@pytest.fixture(scope="module", autouse=True)
def _host_arena_unless_a_test_asks() -> Iterator[None]:
    """The tests here check the host arena path unless they set $TINYFRONT_TFLM_DIR themselves: with a tree
    in the developer's environment, kTensorArenaSize would come from the device runner instead."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("TINYFRONT_TFLM_DIR", raising=False)
        yield


def unzip(bundle: Path, dest: Path) -> Path:
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(dest)
    return dest / bundle.stem


def parse_c_bytes(source: str, name: str) -> bytes:
    body = re.search(re.escape(name) + r"\[[^\]]*\]\s*=\s*\{(.*?)\};", source, re.S)
    assert body is not None, f"array {name} not found"
    return bytes(int(tok, 16) for tok in re.findall(r"0x[0-9a-fA-F]{2}", body.group(1)))


def parse_c_floats(source: str, name: str) -> np.ndarray:
    body = re.search(re.escape(name) + r"\[[^\]]*\]\s*=\s*\{(.*?)\};", source, re.S)
    assert body is not None, f"array {name} not found"
    return np.array([float(t) for t in re.findall(r"(-?[0-9.eE+-]+)f", body.group(1))], dtype=np.float32)


def constant(header: str, name: str) -> str:
    match = re.search(r"constexpr \w+(?: \w+)?\*? " + re.escape(name) + r" = ([^;]+);", header)
    assert match is not None, f"constant {name} not found"
    return match.group(1).strip()


def c_float_value(text: str) -> float:
    return float(np.float32(float(text.rstrip("f"))))


def quantize_like_main_cc(x: np.ndarray, dtype: str, scale: float, zero_point: int) -> np.ndarray:
    """What main.cc's QuantizeInput does: float32 x / scale, std::round (half away from zero), + zp, clamp."""
    if dtype == "float32":
        return x.astype(np.float32)
    v = (x.astype(np.float32) / np.float32(scale)).astype(np.float64)
    q = np.where(v >= 0, np.floor(v + 0.5), np.ceil(v - 0.5)) + zero_point
    info = np.iinfo(dtype)
    return np.clip(q, info.min, info.max).astype(dtype)


@pytest.fixture(scope="module")
def int8_bundle(candidates: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    from firmware_export import export_tflm_bundle

    out = tmp_path_factory.mktemp("tflm") / "digits_int8.zip"
    info = export_tflm_bundle(candidates["int8"], out)
    return unzip(out, out.parent), info


@pytest.mark.slow
def test_bundle_has_the_model_byte_for_byte(int8_bundle: tuple[Path, object], candidates: dict[str, Path]) -> None:
    folder, info = int8_bundle
    expected = {
        "model.tflite", "model_data.h", "model_data.cc", "model_settings.h", "model_op_resolver.h", "main.cc",
        "test_input.h", "test_input.cc", "CMakeLists.txt", "Makefile", "README.md", "metadata.json",
        "tinyfront_model.h", "tinyfront_model.cc",
    }  # fmt: skip
    assert set(info.files) == expected  # type: ignore[attr-defined]
    assert {p.name for p in folder.iterdir()} == expected
    source = (candidates["int8"] / "model.tflite").read_bytes()
    assert (folder / "model.tflite").read_bytes() == source
    cc = (folder / "model_data.cc").read_text()
    assert "alignas(16) const unsigned char g_model_data[]" in cc
    assert parse_c_bytes(cc, "g_model_data") == source
    assert int(re.search(r"g_model_data_len = (\d+);", cc).group(1)) == len(source)  # type: ignore[union-attr]
    assert info.files["model.tflite"] == len(source)  # type: ignore[attr-defined]
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["spec"]["precision"] == "int8" and meta["extra_key_from_the_future"] == {"ignored": True}
    assert meta["bundle"]["model"]["bytes"] == len(source)


@pytest.mark.slow
@pytest.mark.parametrize("compiler", ["g++", "arm-none-eabi-g++"])
def test_sources_compile_without_tflm(int8_bundle: tuple[Path, object], compiler: str, tmp_path: Path) -> None:
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} is not installed")
    folder, _ = int8_bundle
    flags = ["-std=c++17", "-Wall", "-Wextra", "-Werror"]
    if compiler.startswith("arm-"):
        flags += ["-mcpu=cortex-m33", "-mthumb"]
    for source in ("model_data.cc", "test_input.cc"):
        obj = tmp_path / (source + ".o")
        done = subprocess.run([compiler, *flags, "-c", str(folder / source), "-o", str(obj)], capture_output=True)
        assert done.returncode == 0, done.stderr.decode()
        assert obj.stat().st_size > 0
    probe = tmp_path / "settings_probe.cc"
    probe.write_text(
        '#include "model_settings.h"\n#include "test_input.h"\n'
        'static_assert(kTensorArenaSize % 16 == 0, "arena");\n'
        'static_assert(kInputElements == kTestInputElements, "input");\n'
        "int probe() { return kNumClasses + kCategoryLabels[0][0] + kTensorArenaSize; }\n"
    )
    done = subprocess.run(
        [compiler, *flags, "-I", str(folder), "-c", str(probe), "-o", str(tmp_path / "probe.o")], capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode()


@pytest.mark.slow
def test_arena_allocates_and_reproduces_expected_output(int8_bundle: tuple[Path, object]) -> None:
    from tflite_micro.python.tflite_micro import runtime

    folder, info = int8_bundle
    settings = (folder / "model_settings.h").read_text()
    arena = int(constant(settings, "kTensorArenaSize"))
    measured = int(constant(settings, "kTensorArenaMeasuredBytes"))
    margin = int(constant(settings, "kTensorArenaMarginBytes"))
    assert arena == info.arena_size  # type: ignore[attr-defined]
    assert arena % 16 == 0 and arena >= measured + margin and margin >= 1024
    model = (folder / "model.tflite").read_bytes()
    # The measured figure is the minimum: 64 bytes less does not allocate.
    with pytest.raises(RuntimeError):
        runtime.Interpreter.from_bytes(model, arena_size=measured - 64)
    interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena)
    test_cc = (folder / "test_input.cc").read_text()
    x = parse_c_floats(test_cc, "g_test_input")
    assert x.size == int(constant(settings, "kInputElements")) == 64
    scale = c_float_value(constant(settings, "kInputScale"))
    zero_point = int(constant(settings, "kInputZeroPoint"))
    x_raw = quantize_like_main_cc(x, "int8", scale, zero_point).reshape(1, 8, 8, 1)
    interpreter.set_input(x_raw, 0)
    interpreter.invoke()
    out = np.array(interpreter.get_output(0))
    expected = parse_c_bytes(test_cc, "g_expected_output_raw")
    assert out.tobytes() == expected
    header = (folder / "test_input.h").read_text()
    expected_class = int(constant(header, "kTestExpectedClass"))
    assert 0 <= expected_class < 10
    assert int(constant(header, "kTestHostTopClass")) == int(np.argmax(out))
    # The sample is a real validation sample: its floats are digits / 16.
    assert np.all(np.isin(np.round(x * 16), np.arange(17))) and np.allclose(x * 16, np.round(x * 16))


@pytest.mark.slow
def test_op_resolver_lists_exactly_the_models_ops(int8_bundle: tuple[Path, object]) -> None:
    folder, _ = int8_bundle
    check_resolver(folder)


def check_resolver(folder: Path) -> list[str]:
    from search.tflite_graph import parse_tflite, read_operators, resolver_method_name

    header = (folder / "model_op_resolver.h").read_text()
    found = re.findall(r"resolver\.(Add\w+)\((?:tflite::(Register_\w+)\(\))?\)", header)
    calls = [method for method, _ in found]
    n = int(constant(header, "kNumModelOps"))
    assert "MicroMutableOpResolver<kNumModelOps>" in header and "AllOpsResolver" not in header
    model = (folder / "model.tflite").read_bytes()
    ops = parse_tflite(model).ops
    assert n == len(ops) == len(calls) == len(set(calls))
    assert calls == [resolver_method_name(op) for op in ops]
    # Type-specific kernels where every use of the op has the types they take; generic otherwise.
    wanted = {}
    for node in read_operators(model):
        types = tuple(t.type if t else "-" for t in (*node.inputs[:2], node.outputs[0]))
        wanted.setdefault(node.op, set()).add(types)
    for op, (_, variant) in zip(ops, found, strict=True):
        if op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and wanted[op] == {("INT8", "INT8", "INT8")}:
            assert variant == f"Register_{op}_INT8"
        elif op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and wanted[op] == {("INT16", "INT8", "INT16")}:
            assert variant == f"Register_{op}_INT16"
        elif any("FLOAT32" in t for t in wanted[op]) or op == "RESHAPE":
            assert variant == ""
    meta = json.loads((folder / "metadata.json").read_text())["bundle"]["op_resolver"]
    assert meta["methods"] == calls and len(meta["registrations"]) == n
    return list(ops)


MLPERF_FILES = [
    "ad01_fp32.tflite", "ad01_int8.tflite", "kws_ref_model.tflite", "person_detect.tflite",
    "pretrainedResnet.tflite", "pretrainedResnet_quant.tflite", "vww_96_float.tflite", "vww_96_int8.tflite",
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", MLPERF_FILES)
def test_op_resolver_for_mlperf_tiny_models(mlperf_dir: Path, name: str, tmp_path: Path) -> None:
    from tflite_micro.python.tflite_micro import runtime

    from firmware_export import export_tflite_file
    from search.targets import get_target

    path = mlperf_dir / name
    if not path.exists():
        pytest.skip(f"{path} missing")
    info = export_tflite_file(path, tmp_path / "b.zip", target=get_target("nrf5340"))
    folder = unzip(info.path, tmp_path)
    ops = check_resolver(folder)
    assert len(ops) >= 1
    settings = (folder / "model_settings.h").read_text()
    arena = int(constant(settings, "kTensorArenaSize"))
    assert arena == info.arena_size and arena > int(constant(settings, "kTensorArenaMeasuredBytes"))
    # The synthetic test input's expected output reproduces in TFLM with kTensorArenaSize.
    model = (folder / "model.tflite").read_bytes()
    interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena)
    dtype = constant(settings, "kInputTypeName").strip('"')
    x = parse_c_floats((folder / "test_input.cc").read_text(), "g_test_input")
    scale = c_float_value(constant(settings, "kInputScale"))
    zp = int(constant(settings, "kInputZeroPoint"))
    shape = interpreter.get_input_details(0)["shape"]
    interpreter.set_input(quantize_like_main_cc(x, dtype, scale, zp).reshape(shape), 0)
    interpreter.invoke()
    expected = parse_c_bytes((folder / "test_input.cc").read_text(), "g_expected_output_raw")
    assert np.array(interpreter.get_output(0)).tobytes() == expected
    assert "synthetic input" in (folder / "README.md").read_text()


@pytest.mark.slow
def test_float32_model_bundle(candidates: dict[str, Path], tmp_path: Path) -> None:
    from tflite_micro.python.tflite_micro import runtime

    from firmware_export import export_tflm_bundle

    info = export_tflm_bundle(candidates["float32"], tmp_path / "f32.zip")
    folder = unzip(info.path, tmp_path)
    settings = (folder / "model_settings.h").read_text()
    assert constant(settings, "kInputTypeName") == '"float32"' and constant(settings, "kInputScale") == "0.0f"
    model = (folder / "model.tflite").read_bytes()
    interpreter = runtime.Interpreter.from_bytes(model, arena_size=info.arena_size)
    x = parse_c_floats((folder / "test_input.cc").read_text(), "g_test_input")
    interpreter.set_input(x.reshape(1, 8, 8, 1), 0)
    interpreter.invoke()
    out = np.array(interpreter.get_output(0))
    assert out.tobytes() == parse_c_bytes((folder / "test_input.cc").read_text(), "g_expected_output_raw")
    assert abs(float(out.sum()) - 1.0) < 1e-5  # softmax
    makefile = (folder / "Makefile").read_text()
    assert "CPU ?= cortex-m4" in makefile and "FLOAT_FLAGS ?= -mfpu=fpv4-sp-d16 -mfloat-abi=hard" in makefile


def test_margin_follows_cmsis_nn_buffer_formulas(candidates: dict[str, Path]) -> None:
    from firmware_export._arena import FIXED_MARGIN, cmsis_nn_margin

    model = (candidates["int8"] / "model.tflite").read_bytes()
    # Conv2D 3x3, 1 input channel: im2col 2 * align4(9) int16 = 48 B (DSP); 4 * align16(9) = 64 B (MVE).
    # DepthwiseConv2D 3x3 pad 1: 0 B on DSP (3x3 kernel), 4 * 124 * 9 = 4464 B on MVE.
    # AveragePooling2D over 8 channels: 8 * 4 = 32 B. Dense(10) on MVE: 10 * 4 = 40 B persistent kernel sums.
    dsp = cmsis_nn_margin(model, "cortex-m33")
    assert (dsp.max_scratch_bytes, dsp.persistent_bytes, dsp.total) == (48, 0, 48 + FIXED_MARGIN)
    mve = cmsis_nn_margin(model, "cortex-m55")
    assert (mve.max_scratch_bytes, mve.persistent_bytes) == (4464, 40)
    assert mve.max_scratch_op.startswith("DEPTHWISE_CONV_2D")
    from firmware_export._arena import _op_buffers, _operators

    pool = [op for op in _operators(model) if op["name"] == "AVERAGE_POOL_2D"]
    assert len(pool) == 1 and _op_buffers(pool[0], "dsp") == (32, 0)
    assert cmsis_nn_margin(model, "cortex-m0plus").max_scratch_bytes == 0


@pytest.mark.slow
def test_refusals(candidates: dict[str, Path], tmp_path: Path) -> None:
    from firmware_export import export_tflm_bundle

    with pytest.raises(ExportError, match="float16"):
        export_tflm_bundle(candidates["float16"], tmp_path / "f16.zip")
    assert not (tmp_path / "f16.zip").exists()
    out = tmp_path / "exists.zip"
    out.write_bytes(b"keep me")
    with pytest.raises(ExportError, match="already exists.*force"):
        export_tflm_bundle(candidates["int8"], out)
    assert out.read_bytes() == b"keep me"
    info = export_tflm_bundle(candidates["int8"], out, force=True)
    assert zipfile.is_zipfile(out) and info.files["model.tflite"] > 0
    with pytest.raises(ExportError, match="does not exist"):
        export_tflm_bundle(tmp_path / "nowhere", tmp_path / "a.zip")
    broken = tmp_path / "broken"
    shutil.copytree(candidates["int8"], broken)
    (broken / "model.tflite").unlink()
    with pytest.raises(ExportError, match="no model.tflite"):
        export_tflm_bundle(broken, tmp_path / "b.zip")
    shutil.copy(candidates["int8"] / "model.tflite", broken / "model.tflite")
    result = json.loads((broken / "result.json").read_text())
    del result["spec"]
    (broken / "result.json").write_text(json.dumps(result))
    with pytest.raises(ExportError, match="no key 'spec'"):
        export_tflm_bundle(broken, tmp_path / "c.zip")


# ---- kTensorArenaSize from the device runner (issue 12: "allocates with exactly the stated size") ----


def test_arena_without_a_runner_is_host_plus_margin_and_says_so(
    candidates: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from firmware_export import export_tflm_bundle
    from firmware_export._arena import HOST_SOURCE_TEXT

    monkeypatch.delenv("TINYFRONT_TFLM_DIR", raising=False)
    info = export_tflm_bundle(candidates["int8"], tmp_path / "bundle.zip")
    folder = unzip(tmp_path / "bundle.zip", tmp_path / "out")
    arena = json.loads((folder / "metadata.json").read_text())["bundle"]["arena"]
    assert arena["source"] == "host" and arena["source_text"] == HOST_SOURCE_TEXT
    assert "no device runner here for cortex-m33" in arena["device_not_used_because"]
    assert arena["device"] is None
    assert arena["tensor_arena_size"] == info.arena_size == arena["host_estimate_bytes"]
    assert info.arena_size == -(-(arena["measured_bytes"] + arena["margin_bytes"]) // 16) * 16
    readme = (folder / "README.md").read_text()
    assert f"| {info.arena_size} bytes: {arena['measured_bytes']} measured + {arena['margin_bytes']} margin" in readme
    assert f"source: {HOST_SOURCE_TEXT}" in readme
    settings = (folder / "model_settings.h").read_text()
    assert f"// {HOST_SOURCE_TEXT}: measured + margin" in settings


@pytest.mark.slow
def test_exported_arena_is_the_device_minimum_and_allocates_exactly(
    candidates: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a runner the stated kTensorArenaSize allocates exactly on the device's kernels, <= 5 % above the minimum."""
    import os

    from firmware_export import export_tflm_bundle
    from firmware_export._arena import DEVICE_SOURCE_TEXT
    from search.device_runner import run_on_device

    reason = device_runner_missing()
    if reason is not None:
        pytest.skip(reason)
    cache = Path(os.environ.get("TINYFRONT_BUILD_CACHE") or tmp_path / "cache")
    monkeypatch.setenv("TINYFRONT_TFLM_DIR", str(TFLM_CMSIS))
    monkeypatch.setenv("TINYFRONT_BUILD_CACHE", str(cache))
    info = export_tflm_bundle(candidates["int8"], tmp_path / "bundle.zip")  # stm32l552: Cortex-M33
    folder = unzip(tmp_path / "bundle.zip", tmp_path / "out")
    arena = json.loads((folder / "metadata.json").read_text())["bundle"]["arena"]
    assert arena["source"] == "device" and arena["source_text"] == DEVICE_SOURCE_TEXT, arena
    size, minimum = arena["tensor_arena_size"], arena["device"]["arena_min_bytes"]
    assert size == info.arena_size and size % 16 == 0
    assert minimum <= size <= 1.05 * minimum
    assert arena["device"]["runner_core"] == "cortex-m33" and arena["device"]["allocates_with_exactly_stated"]
    # Independently: exactly the stated size allocates with the device kernels, 16 bytes less does not.
    model = (folder / "model.tflite").read_bytes()
    exact = run_on_device(model, "cortex-m33", tree=TFLM_CMSIS, cache_dir=cache, check_arena=size)
    less = run_on_device(model, "cortex-m33", tree=TFLM_CMSIS, cache_dir=cache, check_arena=size - 16)
    assert exact.arena_check is True and less.arena_check is False
    assert exact.arena_min == minimum  # the bisection is deterministic
    # The host path would have stated more (64-bit host records + a CMSIS-NN margin estimate).
    assert arena["host_estimate_bytes"] > size
    settings = (folder / "model_settings.h").read_text()
    assert f"constexpr int kTensorArenaSize = {size};" in settings and DEVICE_SOURCE_TEXT in settings
    readme = (folder / "README.md").read_text()
    assert f"bisected minimum {minimum} B rounded up to 16, {DEVICE_SOURCE_TEXT}" in readme
    assert f"allocated it with exactly `kTensorArenaSize` = {size} bytes" in readme


def test_choose_arena_falls_back_to_the_host_figure_with_a_reason(tmp_path: Path, mlperf_dir: Path) -> None:
    from firmware_export._arena import HOST_SOURCE_TEXT, choose_arena

    model = (mlperf_dir / "kws_ref_model.tflite").read_bytes()
    esp = choose_arena(model, "xtensa-lx7", 25_552)
    assert (esp.size, esp.source, esp.text) == (25_552, "host", HOST_SOURCE_TEXT)
    assert esp.fallback_reason == "no device runner emulates xtensa-lx7"
    no_tree = choose_arena(model, "cortex-m4", 25_552, tree=tmp_path)  # not a CMSIS-NN tree
    assert no_tree.size == 25_552 and no_tree.device is None
    assert no_tree.fallback_reason is not None and "no device runner here for cortex-m4" in no_tree.fallback_reason
    assert no_tree.to_dict() == {
        "source": "host",
        "source_text": HOST_SOURCE_TEXT,
        "host_estimate_bytes": 25_552,
        "device": None,
        "device_not_used_because": no_tree.fallback_reason,
    }
