"""ONNX Runtime bundle: parity with the TFLite model on the validation samples, and its scripts.

Tolerances (stated here, checked on the 32 bundled validation samples of the digits fixture):
* float32 ONNX vs float32 .tflite (TFLite Micro): softmax outputs within atol 1e-4 (found: ~2e-7).
* int8 QDQ ONNX (onnxruntime quantize_static) vs int8 .tflite (TFLite converter): two independent
  quantisations of one float model, so top-1 agreement >= 99% (with 32 samples: all 32) and
  probabilities within 0.25 of each other (found: max 0.17, on a sample whose top-2 margin is large).
* int8 .tflite converted by tf2onnx (int8 input/output) vs the same .tflite in TFLite Micro: raw int8
  outputs within 8 quantisation steps (8/256 probability; found: 4) and top-1 agreement 100%.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_export_tflm import make_candidates, unzip


@pytest.fixture(scope="session")
def candidates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_candidates(tmp_path_factory.getbasetemp() / "export_candidates")


def _samples(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    data = np.load(folder / "val_samples.npz")
    return data["x"], data["y"]


def _onnx_outputs(model: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])


@pytest.mark.slow
def test_float32_onnx_matches_tflite(candidates: dict[str, Path], tmp_path: Path) -> None:
    from firmware_export import export_onnx_bundle
    from search.tflm import run_tflm

    info = export_onnx_bundle(candidates["float32"], tmp_path / "f32_onnx.zip")
    folder = unzip(info.path, tmp_path)
    expected = {
        "model.onnx", "labels.txt", "metadata.json", "infer.py", "benchmark.py", "bundle_runtime.py",
        "requirements.txt", "README.md", "sample_input.npy", "sample_labels.npy",
    }  # fmt: skip
    assert set(info.files) == expected
    assert (folder / "model.onnx").read_bytes() == (candidates["float32"] / "model.onnx").read_bytes()
    assert (folder / "labels.txt").read_text().splitlines() == [str(i) for i in range(10)]
    x, y = _samples(candidates["float32"])
    onnx_out = _onnx_outputs(folder / "model.onnx", x)
    tflite_out = run_tflm((candidates["float32"] / "model.tflite").read_bytes(), x)
    np.testing.assert_allclose(onnx_out, tflite_out, atol=1e-4)
    assert np.array_equal(onnx_out.argmax(1), tflite_out.argmax(1))
    meta = json.loads((folder / "metadata.json").read_text())
    correct = int(np.sum(onnx_out.argmax(1) == y))
    assert meta["bundle"]["checked_here"]["top1_correct"] == correct and correct >= 24  # >= 75% on 32 samples
    assert f"{correct} of 32 predicted correctly" in (folder / "README.md").read_text()
    requirements = (folder / "requirements.txt").read_text()
    assert "onnxruntime>=" in requirements and "numpy" in requirements


@pytest.mark.slow
def test_int8_qdq_onnx_agrees_with_int8_tflite(candidates: dict[str, Path], tmp_path: Path) -> None:
    from firmware_export import export_onnx_bundle
    from search.tflm import run_tflm

    info = export_onnx_bundle(candidates["int8"], tmp_path / "i8_onnx.zip")
    folder = unzip(info.path, tmp_path)
    x, _ = _samples(candidates["int8"])
    onnx_out = _onnx_outputs(folder / "model.onnx", x)
    tflite_out = run_tflm((candidates["int8"] / "model.tflite").read_bytes(), x)
    agreement = float(np.mean(onnx_out.argmax(1) == tflite_out.argmax(1)))
    assert agreement >= 0.99
    assert float(np.abs(onnx_out - tflite_out).max()) <= 0.25


@pytest.mark.slow
def test_tflite_only_int8_is_converted_with_int8_io(candidates: dict[str, Path], tmp_path: Path) -> None:
    import onnxruntime as ort

    from firmware_export import export_tflite_file
    from firmware_export._test_input import quantize
    from search.tflite_graph import parse_tflite
    from search.tflm import run_tflm_raw

    model = (candidates["int8"] / "model.tflite").read_bytes()
    info = export_tflite_file(
        candidates["int8"] / "model.tflite",
        tmp_path / "tfl_onnx.zip",
        fmt="onnx",
        class_names=[str(i) for i in range(10)],
        samples=candidates["int8"] / "val_samples.npz",
    )
    folder = unzip(info.path, tmp_path)
    meta = json.loads((folder / "metadata.json").read_text())["bundle"]
    spec_in = parse_tflite(model).inputs[0]
    assert meta["input"]["dtype"] == "int8" and meta["input"]["scale"] == pytest.approx(spec_in.scale)
    assert "from_tflite" in meta["model"]["origin"]
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    x, _ = _samples(candidates["int8"])
    onnx_raw, tflm_raw = [], []
    for sample in x:
        q = quantize(sample[np.newaxis], spec_in)
        onnx_raw.append(sess.run(None, {sess.get_inputs()[0].name: q})[0].reshape(-1))
        tflm_raw.append(run_tflm_raw(model, q).reshape(-1))
    a, b = np.array(onnx_raw, dtype=np.int32), np.array(tflm_raw, dtype=np.int32)
    assert np.abs(a - b).max() <= 8
    assert np.array_equal(a.argmax(1), b.argmax(1))


@pytest.mark.slow
def test_infer_and_benchmark_scripts_run(candidates: dict[str, Path], tmp_path: Path) -> None:
    from firmware_export import export_onnx_bundle

    info = export_onnx_bundle(candidates["int8"], tmp_path / "scripts.zip")
    folder = unzip(info.path, tmp_path)

    def run(*args: str) -> str:
        done = subprocess.run([sys.executable, *args], cwd=folder, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    out = run("infer.py", "--seed", "0")
    top = re.search(r"top class: (\d) \(label '(\d)'\), score ([0-9.]+)", out)
    assert top is not None and top.group(1) == top.group(2) and 0.0 < float(top.group(3)) <= 1.0
    assert re.search(r"expected class: \d \(label '\d'\): (match|mismatch)", out)
    assert "provider: CPUExecutionProvider" in out
    x, y = _samples(candidates["int8"])
    np.save(tmp_path / "one.npy", x[3])
    out = run("infer.py", "--input", str(tmp_path / "one.npy"), "--providers", "NoSuchAccelerator,CPU")
    assert "note: execution provider 'NoSuchAccelerator' is not available here" in out
    assert "provider: CPUExecutionProvider" in out and "top class:" in out
    out = run("benchmark.py", "--runs", "50", "--warmup", "5")
    p50 = float(re.search(r"p50: ([0-9.]+) ms", out).group(1))  # type: ignore[union-attr]
    p99 = float(re.search(r"p99: ([0-9.]+) ms", out).group(1))  # type: ignore[union-attr]
    assert 0.0 < p50 <= p99 < 1000.0
    assert "provider: CPUExecutionProvider" in out and "runs: 50 after 5 warm-up" in out


def _as_factory_writes_it(src: Path, dest: Path, names: list[str], target: str | None = None) -> Path:
    """A copy of a fixture folder whose result.json stores class names as the candidate factory does
    (``dataset.classes``, from :meth:`search.data.Dataset.describe`), optionally for another target."""
    import shutil

    from search.targets import get_target

    shutil.copytree(src, dest)
    result = json.loads((dest / "result.json").read_text())
    result["dataset"].pop("class_names")
    result["dataset"]["classes"] = names
    if target is not None:
        result["target"] = get_target(target).to_dict()
    (dest / "result.json").write_text(json.dumps(result))
    return dest


@pytest.mark.slow
def test_dataset_class_names_reach_labels_and_tflm_figures_are_labelled(
    candidates: dict[str, Path], tmp_path: Path
) -> None:
    from firmware_export import export_onnx_bundle, export_tflm_bundle

    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    folder = _as_factory_writes_it(candidates["int8"], tmp_path / "cand", names)
    onnx_dir = unzip(export_onnx_bundle(folder, tmp_path / "o.zip").path, tmp_path / "o")
    assert (onnx_dir / "labels.txt").read_text().splitlines() == names
    meta = json.loads((onnx_dir / "metadata.json").read_text())
    assert meta["bundle"]["class_names"] == names
    # The trial was a TFLite Micro one (stm32l552): its figures describe model.tflite, not the .onnx.
    assert meta["figures"] == {}
    moved = meta["tflite_figures"]
    assert moved["describes"] == "model.tflite of the candidate on stm32l552 (tflm), not this model.onnx"
    assert set(moved["figures"]) == {"accuracy", "keras_accuracy", "flash_kb", "latency_ms"}
    readme = (onnx_dir / "README.md").read_text()
    assert (
        "**These figures describe model.tflite of the candidate on stm32l552 (tflm), not this model.onnx.**" in readme
    )
    tflm_dir = unzip(export_tflm_bundle(folder, tmp_path / "t.zip").path, tmp_path / "t")
    settings = (tflm_dir / "model_settings.h").read_text()
    assert all(f'"{name}",' in settings for name in names) and "class_0" not in settings
    assert json.loads((tflm_dir / "metadata.json").read_text())["bundle"]["class_names"] == names
    # A candidate searched for an ONNX Runtime board keeps its figures: they were measured on its .onnx.
    own = _as_factory_writes_it(candidates["int8"], tmp_path / "pi", names, target="raspberry-pi-4")
    meta = json.loads(
        (unzip(export_onnx_bundle(own, tmp_path / "p.zip").path, tmp_path / "p") / "metadata.json").read_text()
    )
    assert set(meta["figures"]) == set(moved["figures"]) and "tflite_figures" not in meta
