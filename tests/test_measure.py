"""measure_tflite and ``tinyfront measure`` on MLPerf Tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from explorer.cli import main
from search.errors import CandidateError
from search.flash import c_array_bytes, calibration, flash_estimate, registration_keys, static_ram_bytes
from search.measure import STACK_BYTES_ESTIMATE, cmsis_scratch_bytes, measure_tflite
from search.targets import get_target
from search.tflite_graph import parse_tflite


def test_c_array_bytes_pads_to_16_and_adds_the_length() -> None:
    assert c_array_bytes(53_936) == 53_940
    assert c_array_bytes(17) == 36
    assert c_array_bytes(0) == 4


def test_flash_estimate_labels_measured_and_estimated(mlperf_dir: Path) -> None:
    data = (mlperf_dir / "ad01_int8.tflite").read_bytes()
    flash = flash_estimate(data, parse_tflite(data))
    assert flash["model"].kind == "measured"
    assert flash["model"].value == pytest.approx(c_array_bytes(276_976) / 1024, abs=0.01)
    assert flash["runtime_code"].kind == "estimated" and flash["runtime_code"].error_pct <= 10.0
    assert flash["runtime_code"].value * 1024 > calibration()["cores"]["cortex-m4"]["interpreter_bytes"]
    assert flash["total"].kind == "estimated"
    assert flash["total"].value == pytest.approx(flash["model"].value + flash["runtime_code"].value, abs=0.1)


def test_measure_kws_on_l4r5(mlperf_dir: Path) -> None:
    data = (mlperf_dir / "kws_ref_model.tflite").read_bytes()
    m = measure_tflite(data, get_target("nucleo-l4r5zi"))
    assert m.graph.macs == 2_656_768
    assert m.arena.arena_bytes == pytest.approx(24_282, rel=0.01)
    scratch = cmsis_scratch_bytes(m.graph)
    assert scratch == 2 * 3 * 3 * 64  # the 3x3 depthwise layers: int16 x 9 taps x 64 channels
    static = static_ram_bytes(registration_keys(data), "cortex-m4")
    expected_sram = (m.arena.arena_bytes_32bit + scratch + static + STACK_BYTES_ESTIMATE) / 1024
    assert m.sram.value == pytest.approx(expected_sram, abs=0.01) and m.sram.kind == "estimated"
    assert m.latency.value == pytest.approx(99.8, rel=0.1) and m.latency.kind == "estimated"
    d = json.loads(json.dumps(m.to_dict()))
    assert d["flash"]["model"]["kind"] == "measured"
    assert d["arena"]["breakdown"]["head"] == 16_000


def test_measure_rejects_non_tflm_target(mlperf_dir: Path) -> None:
    data = (mlperf_dir / "ad01_int8.tflite").read_bytes()
    with pytest.raises(CandidateError, match="expected runtime 'tflm', found 'onnxruntime'"):
        measure_tflite(data, get_target("raspberry-pi-4"))


def test_cli_table(mlperf_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["measure", str(mlperf_dir / "kws_ref_model.tflite"), "--target", "nucleo-l4r5zi"]) == 0
    out = capsys.readouterr().out
    assert "MACs: 2,656,768" in out and "params: 22,606" in out
    assert "ops: CONV_2D, DEPTHWISE_CONV_2D, AVERAGE_POOL_2D, RESHAPE, FULLY_CONNECTED, SOFTMAX" in out
    assert "52.7 kB" in out and "measured" in out  # the model array
    assert "head" in out and "16,000" in out
    assert out.count("fits") == 3 and "NOT" not in out


def test_cli_json_and_does_not_fit(mlperf_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = str(mlperf_dir / "vww_96_float.tflite")
    assert main(["measure", model, "--target", "nucleo-f446re", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["target"]["name"] == "nucleo-f446re"
    assert d["arena"]["arena_bytes"] == pytest.approx(324_800, rel=0.01)
    assert d["graph"]["macs"] == 7_489_664
    assert main(["measure", model, "--target", "nucleo-f446re"]) == 0
    out = capsys.readouterr().out
    assert out.count("does NOT fit") == 3  # 850 kB flash > 384, 320 kB SRAM > 96, seconds > 250 ms


def test_cli_errors_are_one_line(tmp_path: Path, mlperf_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["measure", str(tmp_path / "missing.tflite"), "--target", "nucleo-l4r5zi"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model file not found" in err
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model at all")
    assert main(["measure", str(junk), "--target", "nucleo-l4r5zi"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a TFLite flatbuffer" in err
    assert main(["measure", str(mlperf_dir / "ad01_int8.tflite"), "--target", "no-such-board"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown target 'no-such-board'" in err
