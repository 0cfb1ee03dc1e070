"""The device runner: one firmware image per core measures a .tflite on the device's own code in QEMU.

Fast tests check the blob layout and the parsing of the runner's lines; the slow ones build the
runner from ``../shared/tflm/cmsis_nn`` (minutes on first use; set TINYFRONT_BUILD_CACHE to keep
the library between runs) and run the MLPerf Tiny KWS model on Cortex-M4 and Cortex-M33.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import TFLM_CMSIS, device_runner_missing

from search.errors import MeasurementError

#: KWS instructions per inference on Cortex-M4 at -O2 (../shared/tflm/README.md: "7.70 M at -O2").
KWS_M4_O2_INSTRUCTIONS = 7.70e6


def test_blob_layout() -> None:
    from firmware_export.device.runner import pack_blob

    blob = pack_blob(b"\x01" * 21, b"\x02\x03", check_arena=4096)
    assert struct.unpack("<8I", blob[:32]) == (0x42524654, 1, 21, 2, 4096, 0, 0, 0)
    assert blob[32:53] == b"\x01" * 21
    assert blob[53:64] == b"\0" * 11  # the input starts 16-byte aligned
    assert blob[64:] == b"\x02\x03"


def test_parse_runner_lines() -> None:
    from firmware_export.device.runner import parse_runner

    text = "\n".join(
        [
            "tfr runner 1 timer_hz 25000000 arena_max 1048576",
            "tfr allocate ok",
            "tfr arena_used 23008",
            "tfr arena_min 22832",
            "tfr arena_check 22832 ok",
            "tfr invoke ok",
            "tfr invoke_ticks 1000000123",
            "tfr stack_peak 1480",
            "tfr output_bytes 0 3",
            "tfr output_hex 0 0 80ff7f",
            "tfr op 0 CONV_2D 1000",
            "tfr op 1 SOFTMAX 3",
            "tfr done",
        ]
    )
    out = parse_runner("cortex-m4", "mps2-an386", 25_000_000, 0, text)
    assert out.error is None
    assert (out.allocated, out.invoked, out.arena_check) == (True, True, True)
    assert (out.arena_used, out.arena_min, out.stack_peak) == (23008, 22832, 1480)
    assert out.instructions == 1000000123 * 40  # 25 MHz SysTick under -icount shift=0: 40 instructions a tick
    assert out.op_instructions == (("CONV_2D", 40000), ("SOFTMAX", 120))
    assert out.outputs == (bytes([0x80, 0xFF, 0x7F]),)


def test_allocation_failure_is_a_reason_not_an_exception() -> None:
    from firmware_export.device.runner import parse_runner

    text = "tfr runner 1 timer_hz 25000000 arena_max 1048576\n"
    text += "Didn't find op for builtin opcode 'TANH'\ntfr allocate fail\n"
    out = parse_runner("cortex-m4", "mps2-an386", 25_000_000, 2, text)
    assert not out.allocated and out.instructions is None
    assert out.error is not None and "TANH" in out.error


def test_unknown_core_is_refused() -> None:
    from search.device_runner import run_on_device

    with pytest.raises(MeasurementError, match="cortex-m0"):
        run_on_device(b"", "cortex-m0")


def test_default_input_is_seeded(mlperf_dir: Path) -> None:
    from search.device_runner import default_input

    model = (mlperf_dir / "kws_ref_model.tflite").read_bytes()
    a, b = default_input(model), default_input(model)
    assert a == b and len(a) == 49 * 10  # KWS: one int8 tensor of 1x49x10x1
    assert default_input(model, seed=1) != a


@pytest.fixture(scope="module")
def runner_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = device_runner_missing()
    if reason is not None:
        pytest.skip(reason)
    env = os.environ.get("TINYFRONT_BUILD_CACHE")
    return Path(env) if env else tmp_path_factory.mktemp("runner_cache")


def _reference_output(model: bytes, data: bytes) -> bytes:
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(model, arena_size=200_000)
    details = interpreter.get_input_details(0)
    interpreter.set_input(np.frombuffer(data, dtype=details["dtype"]).reshape(details["shape"]), 0)
    interpreter.invoke()
    return bytes(interpreter.get_output(0).tobytes())


@pytest.mark.slow
@pytest.mark.parametrize("core", ["cortex-m4", "cortex-m33", "cortex-m55"])
def test_kws_on_the_device_runner(core: str, runner_cache: Path, mlperf_dir: Path) -> None:
    from search.device_runner import run_on_device

    model = (mlperf_dir / "kws_ref_model.tflite").read_bytes()
    # A seeded input of moderate amplitude: uniform int8 noise saturates the softmax (-128 ... 127).
    data = np.clip(np.random.default_rng(0).normal(0, 32, 49 * 10), -128, 127).astype(np.int8).tobytes()
    first = run_on_device(model, core, data, tree=TFLM_CMSIS, cache_dir=runner_cache)
    assert first.error is None, first.error
    assert first.allocated and first.arena_min is not None and first.arena_used is not None
    # The bisected minimum allocates, and is what TFLM itself reports as used (to the 16-byte step).
    assert first.arena_min <= first.arena_used + 16
    again = run_on_device(
        model, core, first.input, tree=TFLM_CMSIS, cache_dir=runner_cache, check_arena=first.arena_min
    )
    assert again.arena_check is True  # the stated arena allocates with exactly that size
    assert again.instructions == first.instructions  # instruction counts are deterministic
    # Bit-exact against the tflite-micro Python interpreter (reference kernels) on the same input.
    assert first.outputs[0] == _reference_output(model, data)
    assert len(set(first.outputs[0])) >= 4  # a non-degenerate output (not one class at 127, the rest at -128)
    assert first.stack_peak is not None and 256 < first.stack_peak < 64 * 1024
    assert first.instructions is not None
    ops = [op for op, _ in first.op_instructions]
    assert ops.count("CONV_2D") == 5 and ops.count("DEPTHWISE_CONV_2D") == 4 and ops[-1] == "SOFTMAX"
    per_op = sum(n for _, n in first.op_instructions)
    assert abs(per_op - first.instructions) / first.instructions < 0.01
    if core == "cortex-m4":
        assert abs(first.instructions / KWS_M4_O2_INSTRUCTIONS - 1) < 0.03, first.instructions
    if core == "cortex-m55":  # Helium kernels: fewer instructions, more arena (README: 27,300 B)
        assert first.instructions < 0.5 * KWS_M4_O2_INSTRUCTIONS
        assert 27_300 <= first.arena_min <= 27_300 + 16


def _sample(core: str, instructions: int, weight_bytes: int, ms: float, clock: float = 100.0) -> object:
    from search import cpi_model as cm

    row = cm.PublishedRow("m", "m.tflite", 0, core, "board", clock, "microtvm+cmsis-nn", ms, "test")
    return cm.Sample(row, instructions, weight_bytes)


def test_cpi_fit_recovers_known_coefficients() -> None:
    from search import cpi_model as cm

    # cycles = 1.5 x instructions + 2 x weight bytes (M4), 1.2 x instr. + 2 x weight bytes (M33), 100 MHz.
    data = [(9e6, 20_000), (40e6, 200_000), (60e6, 80_000), (0.9e6, 270_000)]
    samples = [_sample("cortex-m4", int(i), w, (1.5 * i + 2 * w) / 1e5) for i, w in data]
    samples += [_sample("cortex-m33", int(i), w, (1.2 * i + 2 * w) / 1e5) for i, w in data]
    fit = cm.fit(samples)  # type: ignore[arg-type]
    assert fit.cpi["cortex-m4"] == pytest.approx(1.5, rel=1e-6)
    assert fit.cpi["cortex-m33"] == pytest.approx(1.2, rel=1e-6)
    assert fit.flash_cycles_per_byte["cortex-m4"] == pytest.approx(2.0, rel=1e-5)
    assert fit.flash_cycles_per_byte["cortex-m33"] == pytest.approx(2.0, rel=1e-5)
    assert fit.log_halfwidth == pytest.approx(0.0, abs=1e-6)  # exact data: leave-one-out residuals are 0
    figure = cm.estimate_latency(10_000_000, 0, "cortex-m4", 100.0, calibration=(fit, {"name": "t"}))
    assert figure.kind == "estimated" and figure.value == pytest.approx(150.0)
    assert "calibration: t" in figure.method and "90% interval" in figure.method


def test_conformal_halfwidth() -> None:
    from search.cpi_model import conformal_halfwidth

    values = [0.01 * k for k in range(1, 20)]  # 19 residuals: the ceil(0.9 * 20) = 18th smallest
    assert conformal_halfwidth(values) == pytest.approx(0.18)
    assert conformal_halfwidth([0.1, 0.3, 0.2]) == pytest.approx(0.3)  # too few rows: the largest


def test_calibrate_csv_is_checked(tmp_path: Path) -> None:
    from explorer.commands.calibrate import read_rows
    from search.errors import ConfigError

    (tmp_path / "a.tflite").write_bytes(b"x")
    bad = tmp_path / "bad.csv"
    bad.write_text("file,target,latency_ms\na.tflite,nucleo,3\n")
    with pytest.raises(ConfigError, match="lacks the column"):
        read_rows(bad)
    bad.write_text("file,target,latency_ms,engine\na.tflite,nucleo,-3,tflm\n")
    with pytest.raises(ConfigError, match="must be > 0, got -3"):
        read_rows(bad)
    bad.write_text("file,target,latency_ms,engine\nb.tflite,nucleo,3,tflm\n")
    with pytest.raises(ConfigError, match="not found: b.tflite"):
        read_rows(bad)
    bad.write_text("file,target,latency_ms,engine\na.tflite,nucleo,3.5,tflm\n")
    assert read_rows(bad)[0]["latency_ms"] == "3.5"


@pytest.mark.slow
def test_device_figures_name_their_source(runner_cache: Path, mlperf_dir: Path) -> None:
    from search.cpi_model import FIT_JSON
    from search.device_runner import device_figures

    if not FIT_JSON.is_file():
        pytest.skip("no shipped CPI calibration")
    model = (mlperf_dir / "kws_ref_model.tflite").read_bytes()
    figures = device_figures(model, "cortex-m4", 120.0, tree=TFLM_CMSIS, cache_dir=runner_cache)
    assert figures.deployable and figures.latency is not None and figures.arena is not None
    assert figures.latency.kind == "estimated" and "calibration:" in figures.latency.method
    assert figures.arena.kind == "measured" and 20_000 < figures.arena.value < 30_000  # README: 22,820 B on M4
    # The published NUCLEO-L4R5ZI (120 MHz) KWS latency, 99.8 ms, lies inside the stated interval.
    assert figures.latency.error_pct is not None
    half = figures.latency.error_pct / 100
    assert figures.latency.value / (1 + half) <= 99.8 <= figures.latency.value * (1 + half)


@pytest.mark.slow
def test_calibrate_command_fits_a_target(
    runner_cache: Path,
    mlperf_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import argparse
    import json

    from explorer.commands import calibrate
    from search.cpi_model import estimate_latency, load_fit
    from search.targets import DEFAULT_TARGETS_FILE

    lines = ["file,target,latency_ms,engine"]
    for name, ms in (("kws_ref_model", 99.8), ("ad01_int8", 8.61), ("pretrainedResnet_quant", 389.6)):
        (tmp_path / f"{name}.tflite").write_bytes((mlperf_dir / f"{name}.tflite").read_bytes())
        lines.append(f"{name}.tflite,nucleo-l4r5zi,{ms},microtvm+cmsis-nn")
    (tmp_path / "lat.csv").write_text("\n".join(lines) + "\n")
    parser = argparse.ArgumentParser()
    calibrate.register(parser.add_subparsers())
    monkeypatch.setenv("TINYFRONT_BUILD_CACHE", str(runner_cache))
    args = parser.parse_args(["calibrate", str(tmp_path / "lat.csv"), "--tflm-dir", str(TFLM_CMSIS)])
    args.out = str(tmp_path / "out")
    assert args.run(args) == 0
    data = json.loads((tmp_path / "out" / "nucleo-l4r5zi.json").read_text())
    assert data["fit"]["rows"] == 3 and len(data["fit"]["loo_log_residuals"]) == 3
    assert 1.0 < data["fit"]["cpi"]["cortex-m4"] < 2.5  # cycles per instruction of a Cortex-M4 running CMSIS-NN
    figure = estimate_latency(
        7_698_600, 0, "cortex-m4", 120.0, calibration=load_fit(tmp_path / "out" / "nucleo-l4r5zi.json")
    )
    assert abs(figure.value / 99.8 - 1) < 0.25 and "calibration: nucleo-l4r5zi" in figure.method
    # The line to paste into targets.toml names the file it wrote (absolute: it is outside the repository).
    written = (tmp_path / "out" / "nucleo-l4r5zi.json").resolve()
    assert (
        f'[targets.nucleo-l4r5zi] in {DEFAULT_TARGETS_FILE}: latency_calibration = "{written}"'
        in capsys.readouterr().out
    )


#: (target, runner core, published KWS latency in ms, device arena of KWS in bytes) per core class:
#: the published rows are microTVM + CMSIS-NN on NUCLEO-L4R5ZI and nRF5340-DK, TFLM + CMSIS-NN (Helium) on
#: EK-RA8D1 (a Cortex-M85, measured on the Cortex-M55 runner: the same Helium code paths, which
#: test_kws_on_the_device_runner shows QEMU runs bit-exact); search/calibration/mcu_latency.csv.
RUNNER_TARGETS = [
    ("nucleo-l4r5zi", "cortex-m4", 99.8, 22_832),
    ("nrf5340", "cortex-m33", 76.1, 22_832),
    ("ek-ra8d1", "cortex-m55", 3.47, 27_312),
]


@pytest.mark.slow
@pytest.mark.parametrize(("target_name", "runner_core", "published_ms", "arena"), RUNNER_TARGETS)
def test_measure_uses_the_runner_when_a_tree_is_given(
    runner_cache: Path,
    mlperf_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    target_name: str,
    runner_core: str,
    published_ms: float,
    arena: int,
) -> None:
    """With $TINYFRONT_TFLM_DIR a TFLM target's SRAM and latency come from the device runner; without, from the host."""
    from search.measure import device_runner_for, measure_tflite
    from search.targets import get_target

    model = (mlperf_dir / "kws_ref_model.tflite").read_bytes()
    target = get_target(target_name)
    monkeypatch.delenv("TINYFRONT_TFLM_DIR", raising=False)
    assert device_runner_for(target) is None
    host = measure_tflite(model, target)
    assert "instructions measured on the device" not in host.latency.method

    monkeypatch.setenv("TINYFRONT_TFLM_DIR", str(TFLM_CMSIS))
    monkeypatch.setenv("TINYFRONT_BUILD_CACHE", str(runner_cache))
    assert device_runner_for(target) == runner_core
    dev = measure_tflite(model, target)
    assert dev.latency.kind == "estimated" and "instructions measured on the device" in dev.latency.method
    assert "90% interval" in dev.latency.method and dev.latency.error_pct is not None
    assert "calibration: cpi_fit (published MLPerf Tiny rows)" in dev.latency.method
    assert abs(dev.latency.value - published_ms) / published_ms < 0.15
    half = dev.latency.error_pct / 100  # the published latency lies inside the stated 90 % interval
    assert dev.latency.value / (1 + half) <= published_ms <= dev.latency.value * (1 + half)
    assert "measured on the device's TFLM + CMSIS-NN code" in dev.sram.method
    # device arena + stack + 1 KiB of interpreter objects: between the arena alone and +8 KiB
    assert f"arena {arena:,} B" in dev.sram.method
    assert arena / 1024 < dev.sram.value < (arena + 8 * 1024) / 1024


@pytest.mark.slow
def test_measure_uses_the_targets_own_calibration(
    runner_cache: Path, mlperf_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A target whose targets.toml entry names a latency_calibration gets cpi x instructions / clock from it."""
    import json
    import re

    from search import cpi_model as cm
    from search.measure import measure_tflite
    from search.targets import get_target

    rows = [
        cm.PublishedRow(f"m{i}", f"m{i}.tflite", 0, "cortex-m33", "b", 128.0, "tflm", 1.25 * n / 128e3, "test")
        for i, n in enumerate((3e6, 8e6, 20e6))
    ]
    fit = cm.fit([cm.Sample(r, int(r.latency_ms * 128e3 / 1.25), 0) for r in rows], flash_term=False)
    (tmp_path / "cal").mkdir()
    (tmp_path / "cal" / "mine.json").write_text(json.dumps({"name": "my nRF5340", "fit": fit.to_dict()}))
    (tmp_path / "targets.toml").write_text(
        '[targets.mine]\ncore = "cortex-m33"\nclock_mhz = 128\nflash_kb = 1024\nsram_kb = 512\n'
        'runtime = "tflm"\nlatency_calibration = "cal/mine.json"\n'
        "budget = { app_flash_kb = 100, app_sram_kb = 100, latency_ms = 200 }\n"
    )
    target = get_target("mine", tmp_path / "targets.toml")
    monkeypatch.setenv("TINYFRONT_TFLM_DIR", str(TFLM_CMSIS))
    monkeypatch.setenv("TINYFRONT_BUILD_CACHE", str(runner_cache))
    dev = measure_tflite((mlperf_dir / "kws_ref_model.tflite").read_bytes(), target)
    match = re.match(r"([\d,]+) instructions measured on the device", dev.latency.method)
    assert match is not None, dev.latency.method
    instructions = int(match.group(1).replace(",", ""))
    assert abs(instructions / 7_680_900 - 1) < 0.03  # KWS on the Cortex-M33 runner
    assert dev.latency.value == pytest.approx(1.25 * instructions / 128e3, abs=1e-3)  # CPI 1.25, no flash term
    assert f"calibration: my nRF5340 [{tmp_path / 'cal' / 'mine.json'}]" in dev.latency.method


@pytest.mark.slow
def test_a_model_over_1_mib_runs_on_the_m55_runner(runner_cache: Path, mlperf_dir: Path) -> None:
    """The AN547 runner reads its blob from DDR: MLPerf Tiny ad01_fp32 (1,067,648 B) fits and runs."""
    from firmware_export.device.runner import pack_blob, runner_board
    from search.device_runner import run_on_device

    model = (mlperf_dir / "ad01_fp32.tflite").read_bytes()
    data = np.random.default_rng(0).standard_normal(640).astype(np.float32).tobytes()
    blob = pack_blob(model, data)
    assert len(blob) > 0x100000  # more than the 1 MiB the blob had in the FPGA SRAM
    assert len(blob) <= runner_board("cortex-m55").blob_max
    m = run_on_device(model, "cortex-m55", data, tree=TFLM_CMSIS, cache_dir=runner_cache)
    assert m.error is None, m.error
    assert m.allocated and m.arena_min is not None and 4_000 < m.arena_min < 8_000  # M4/M33 runners: 4,848 B
    assert m.instructions is not None and m.instructions > 100_000
    out = np.frombuffer(m.outputs[0], dtype=np.float32)
    ref = np.frombuffer(_reference_output(model, data), dtype=np.float32)
    assert out.shape == (640,) and np.allclose(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_a_core_without_a_calibrated_cpi_keeps_the_device_sram_and_the_mac_latency(
    runner_cache: Path, mlperf_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As for Cortex-M7 with the shipped fit: no CPI for the class, so the latency is the MAC model's, said so."""
    import json
    from dataclasses import replace

    from search import cpi_model as cm
    from search.latency_model import estimate_mcu_latency
    from search.measure import measure_tflite
    from search.targets import get_target
    from search.tflite_graph import parse_tflite

    rows = [
        cm.PublishedRow(f"m{i}", "m", 0, "cortex-m4", "b", 100.0, "tflm", n / 1e5, "t")
        for i, n in enumerate((1e6, 3e6))
    ]
    fit = cm.fit([cm.Sample(r, int(r.latency_ms * 1e5), 0) for r in rows], flash_term=False)
    (tmp_path / "m4_only.json").write_text(json.dumps({"name": "m4 only", "fit": fit.to_dict()}))
    # Bypasses the targets loader (which refuses this file for a Cortex-M33 target) to reach the fallback.
    target = replace(get_target("nrf5340"), latency_calibration=str(tmp_path / "m4_only.json"))
    monkeypatch.setenv("TINYFRONT_TFLM_DIR", str(TFLM_CMSIS))
    monkeypatch.setenv("TINYFRONT_BUILD_CACHE", str(runner_cache))
    model = (mlperf_dir / "kws_ref_model.tflite").read_bytes()
    m = measure_tflite(model, target)
    mac = estimate_mcu_latency(parse_tflite(model), "cortex-m33", 128.0)
    assert m.latency.value == mac.value and m.latency.kind == "estimated"
    assert m.latency.method.startswith(mac.method)
    assert f"{tmp_path / 'm4_only.json'} has no CPI for cortex-m33" in m.latency.method
    assert "the device runner measured 7,68" in m.latency.method  # 7,680,900 instructions on the M33 runner
    assert "arena 22,832 B" in m.sram.method and "measured on the device's TFLM + CMSIS-NN code" in m.sram.method
