"""Flash and static RAM estimates from the calibration links (search/calibration/tflm_code_size.json).

The links themselves are too slow for CI (a libtflm.a per core takes minutes): they are made by
``python -m search.flash_calibrate`` and checked by ``benchmarks/flash_vs_link.py``. These tests
check the data's provenance and that the estimate composes it as documented.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from search import flash
from search.errors import MeasurementError
from search.tflite_graph import parse_tflite

KWS_KEYS = (
    "CONV_2D:INT8",
    "DEPTHWISE_CONV_2D:INT8",
    "AVERAGE_POOL_2D:INT8",
    "RESHAPE",
    "FULLY_CONNECTED:INT8",
    "SOFTMAX:INT8",
)


def _m4() -> dict:
    return flash.calibration()["cores"]["cortex-m4"]


def test_calibration_provenance() -> None:
    cal = flash.calibration()
    assert cal["tflm_commit"] == "90b983c2b3f1480642e040bbd2ddb37b998f3424"
    assert cal["compiler"].startswith("arm-none-eabi-gcc")
    assert "-Os" in cal["compile_flags"] and "-DCMSIS_NN" in cal["compile_flags"]
    assert "--gc-sections" in cal["link_flags"] and "nano.specs" in cal["link_flags"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", cal["date"])
    assert cal["core_flags"]["cortex-m4"] == "-mfpu=fpv4-sp-d16 -mfloat-abi=hard"
    m4 = _m4()
    # The interpreter link's flash splits into TFLM, the C runtime, startup and the probe (+ its
    # 20-byte model stand-in). The map lists input sections before the linker merges duplicate
    # strings, so the split's sum exceeds the image by a few percent.
    split = m4["interpreter_split"]
    assert set(split) == {"tflm", "c_runtime", "startup", "application"}
    assert split["tflm"] > split["c_runtime"] > split["startup"] > 0
    assert m4["interpreter_bytes"] + 20 <= sum(split.values()) <= 1.05 * (m4["interpreter_bytes"] + 20)
    assert len(m4["section_sizes"]) == len(m4["section_names"])


def test_union_of_sections_per_op_list() -> None:
    m4 = _m4()
    sizes = m4["section_sizes"]
    ops = m4["ops"]
    base = m4["interpreter_bytes"]
    conv8 = sum(sizes[i] for i in ops["CONV_2D:INT8"]["sections"])
    # One op: the interpreter plus exactly that op's sections, which the op's own link measured.
    assert flash.runtime_code_bytes(["CONV_2D:INT8"]) == (base + conv8, [])
    # (The image also holds alignment fill the sections do not: a percent or two.)
    assert conv8 == pytest.approx(ops["CONV_2D:INT8"]["delta_bytes"], rel=0.03)
    # The generic CONV_2D links every type's path: more code than the int8 variant.
    assert ops["CONV_2D"]["delta_bytes"] > ops["CONV_2D:INT8"]["delta_bytes"] + 1024
    # Shared code is counted once: an op set costs less than the sum of its ops' deltas, more than its largest.
    code, missing = flash.runtime_code_bytes(list(KWS_KEYS))
    deltas = [ops[k]["delta_bytes"] for k in KWS_KEYS]
    assert missing == []
    assert base + max(deltas) < code < base + sum(deltas)
    # Registering an op twice changes nothing; an unknown op costs the median op delta and is reported.
    assert flash.runtime_code_bytes(list(KWS_KEYS) * 2)[0] == code
    all_deltas = sorted(e["delta_bytes"] for e in ops.values())
    with_custom, missing = flash.runtime_code_bytes([*KWS_KEYS, "CUSTOM:MyOp"])
    assert missing == ["CUSTOM:MyOp"] and with_custom == code + all_deltas[len(all_deltas) // 2]


def test_union_matches_the_linked_op_sets() -> None:
    """Real links of whole op sets (no model): the union estimate is within 3 % of each (it counts
    duplicate strings the linker merges); the plain sum of per-op deltas is 20-40 % over."""
    for check in _m4()["check_links"]:
        estimate, missing = flash.runtime_code_bytes(check["ops"])
        assert missing == [] and estimate == check["union_estimate_bytes"]
        assert estimate == pytest.approx(check["linked_bytes"], rel=0.03), check["ops"]
        assert 1.2 < check["sum_of_deltas_bytes"] / check["linked_bytes"] < 1.4


def test_variant_keys() -> None:
    assert flash.variant_key("CONV_2D", {"INT8"}, {"INT8"}) == "CONV_2D:INT8"
    assert flash.variant_key("FULLY_CONNECTED", {"INT16"}, {"INT16"}) == "FULLY_CONNECTED:INT16"
    assert flash.variant_key("SOFTMAX", {"INT8"}, {"INT16"}) == "SOFTMAX:INT8_INT16"
    assert flash.variant_key("CONV_2D", {"FLOAT32"}, {"FLOAT32"}) == "CONV_2D"
    assert flash.variant_key("CONV_2D", {"INT8", "FLOAT32"}, {"INT8"}) == "CONV_2D"  # mixed: generic
    assert flash.variant_key("RESHAPE", {"INT8"}, {"INT8"}) == "RESHAPE"  # no typed registration
    assert flash.variant_key("MUL", {"INT16"}, {"INT16"}) == "MUL"  # CMSIS-NN has MUL_INT8 only


def test_registration_keys_of_mlperf_models(mlperf_dir: Path) -> None:
    kws = (mlperf_dir / "kws_ref_model.tflite").read_bytes()
    assert flash.registration_keys(kws) == KWS_KEYS
    vww_float = (mlperf_dir / "vww_96_float.tflite").read_bytes()
    assert flash.registration_keys(vww_float) == (
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "AVERAGE_POOL_2D",
        "RESHAPE",
        "FULLY_CONNECTED",
        "SOFTMAX",
    )
    with pytest.raises(MeasurementError, match="not a TFLite flatbuffer"):
        flash.registration_keys(b"\0" * 64)


def test_flash_estimate_kws(mlperf_dir: Path) -> None:
    data = (mlperf_dir / "kws_ref_model.tflite").read_bytes()
    fig = flash.flash_estimate(data, parse_tflite(data), "cortex-m4")
    code, _ = flash.runtime_code_bytes(KWS_KEYS, "cortex-m4")
    assert fig["model"].kind == "measured"
    assert fig["model"].value == pytest.approx(flash.c_array_bytes(len(data)) / 1024, abs=0.01)
    assert fig["runtime_code"].kind == "estimated" and fig["runtime_code"].value == pytest.approx(code / 1024, abs=0.1)
    assert "90b983c2" in fig["runtime_code"].method and "CONV_2D:INT8" in fig["runtime_code"].method
    assert fig["total"].value == pytest.approx(fig["model"].value + fig["runtime_code"].value, abs=0.1)
    # The stated error is the largest residual recorded by benchmarks/flash_vs_link.py on this core.
    residuals = [abs(r["code_error_pct"]) for r in _m4()["validation"]]
    assert fig["runtime_code"].error_pct == pytest.approx(max(residuals), abs=0.05)
    assert fig["runtime_code"].error_pct <= 10.0
    # The recorded link of this very model: the estimate is within the stated error of it.
    linked = next(r for r in _m4()["validation"] if r["model"] == "kws_ref_model")
    assert fig["total"].value * 1024 == pytest.approx(linked["linked_bytes"], rel=0.10)


def test_stand_in_cores_say_so(mlperf_dir: Path) -> None:
    data = (mlperf_dir / "ad01_int8.tflite").read_bytes()
    graph = parse_tflite(data)
    m4 = flash.flash_estimate(data, graph, "cortex-m4")
    esp = flash.flash_estimate(data, graph, "xtensa-lx7")
    assert esp["runtime_code"].value == m4["runtime_code"].value
    assert esp["runtime_code"].error_pct == pytest.approx(m4["runtime_code"].error_pct + 30.0)
    assert "cortex-m4 figures stand in for xtensa-lx7" in esp["runtime_code"].method
    with pytest.raises(MeasurementError, match="no flash calibration for core 'cortex-a72'"):
        flash.flash_estimate(data, graph, "cortex-a72")


def test_static_ram_grows_by_one_resolver_slot_per_op() -> None:
    m4 = _m4()
    one = flash.static_ram_bytes(["RESHAPE"])
    assert one == m4["static_ram_bytes"] + m4["ops"]["RESHAPE"]["static_ram_delta"]
    two = flash.static_ram_bytes(["RESHAPE", "SQUEEZE"])
    slot = m4["resolver_slot_bytes"]
    assert two - one == m4["ops"]["SQUEEZE"]["static_ram_delta"] + round(slot * 1)
    assert 8 <= slot <= 128  # a TFLMRegistration (function pointers) plus the op code
    for check in m4["check_links"]:
        assert flash.static_ram_bytes(check["ops"]) == pytest.approx(check["static_ram_bytes"], abs=64)


def test_flash_calibrate_refuses_a_bad_argument_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m search.flash_calibrate`` reports errors as ``tinyfront`` does: one line on stderr, exit 1."""
    from search.flash_calibrate import main

    with pytest.raises(SystemExit) as exited:
        main(["--tflm-dir", "tree", "--build-dir", "build", "--jobs", "two"])
    assert exited.value.code == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "python -m search.flash_calibrate: error: argument --jobs: invalid int value: 'two' "
        "(see python -m search.flash_calibrate --help)"
    ]


def test_flash_calibrate_reports_a_failure_in_one_line_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from search.flash_calibrate import main

    tree = tmp_path / "not-a-tree"
    tree.mkdir()
    assert (
        main(["--tflm-dir", str(tree), "--build-dir", str(tmp_path / "build"), "--out", str(tmp_path / "o.json")]) == 1
    )
    out, err = capsys.readouterr()
    assert out == "" and not (tmp_path / "o.json").exists()
    assert err.splitlines() == [
        f"python -m search.flash_calibrate: error: {tree} is not a TFLite Micro tree "
        "(no tensorflow/lite/micro/micro_interpreter.h)"
    ]
